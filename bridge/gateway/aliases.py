"""`dotbridge aliases`: the per-mode names (`<index>.knn`, ...) that Discover index patterns target.

They are plain aliases of the cluster (OpenSearch or Elasticsearch), created with the user's own
credentials like every other command; the gateway recognises them by name and runs their mode.
"""

from __future__ import annotations

from collections.abc import Sequence

from bridge.backends import Client
from bridge.gateway.discover import ALIAS_MODES, alias_name
from bridge.indexes import read_spec
from bridge.search.transport import missing_index


def mode_aliases(
    client: Client, index: str, modes: Sequence[str] = ALIAS_MODES, *, remove: bool = False
) -> list[str]:
    """Add (or remove) one alias per mode on a dotbridge index; the aliases' names."""
    for mode in modes:
        if mode not in ALIAS_MODES:
            raise ValueError(f"unknown mode {mode!r}; choose one of: {', '.join(ALIAS_MODES)}")
    if read_spec(client, index) is None:  # IndexMismatch when it is not a dotbridge index
        raise missing_index(index)
    names = [alias_name(index, mode) for mode in modes]
    verb = "remove" if remove else "add"
    actions = [{verb: {"index": index, "alias": name}} for name in names]
    client.indices.update_aliases(body={"actions": actions})
    return names
