"""Whether a cluster can serve an index's k-NN engine, asked before anything is written.

faiss is the one engine that needs a native library on every data node: the k-NN plugin loads it
at the first segment it writes, and a node without it exits at once (`UnsatisfiedLinkError` is
fatal), which the integration-test zip from Maven Central (no native libraries) would do.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from bridge.backends import client_errors, status_of
from bridge.errors import BadInput
from mappings import VECTOR_FIELD

log = logging.getLogger(__name__)

FAISS_LIBRARY_PREFIX = "opensearchknn_faiss"
# Where the JVM looks for native libraries on Linux when java.library.path is not set.
SYSTEM_LIBRARY_DIRS = ("/usr/java/packages/lib", "/usr/lib64", "/lib64", "/lib", "/usr/lib")
DATA_ROLES = ("data", "search", "warm")


def index_engine(mappings: dict[str, Any], vector_field: str = VECTOR_FIELD) -> str | None:
    """The k-NN engine of an index's vector field, from its `mappings` (None when it names
    none); pure."""
    field = mappings.get("properties", {}).get(vector_field, {})
    method = field.get("method") or {}
    return method.get("engine")


def check_engine(client: Any, engine: str | None, *, index: str | None = None) -> None:
    """BadInput, before anything is created or written, when the cluster cannot serve `engine`."""
    if engine != "faiss":
        return
    reason = faiss_unavailable(client)
    if reason is None:
        return
    what = f"Index {index!r} uses the faiss engine, but" if index else "--engine faiss:"
    advice = (
        "use another --index (created with --engine lucene)" if index else "use --engine lucene"
    )
    raise BadInput(
        f"{what} this cluster cannot serve faiss ({reason}), and writing faiss vectors there "
        f"would bring the node down: {advice}."
    )


def faiss_unavailable(client: Any) -> str | None:
    """Why some data node cannot load faiss's native library; None when every one can.

    The k-NN plugin loads the library lazily, at the first segment it writes, and a node that
    lacks it exits at once (`UnsatisfiedLinkError` is fatal). Nothing in the plugin's stats tells
    beforehand: `faiss_initialized` is false until then, and is also set merely by parsing a faiss
    mapping. So the nodes' own facts decide (node info): an install on this machine is looked
    into where the JVM would look (the plugin's lib/ folder, java.library.path, LD_LIBRARY_PATH,
    the system folders); a remote node that runs the integration-test zip distribution (the only
    one with a k-NN plugin from Maven Central, which carries no native libraries) cannot; other
    remote distributions ship the library with the plugin.
    """
    try:
        info = client.nodes.info(metric="plugins,settings,process,jvm,os")
    except client_errors() as exc:
        if status_of(exc) != 403:
            raise
        log.warning("not allowed to read node info; cannot check that the nodes can load faiss")
        return None
    return faiss_unavailable_on(list(info.get("nodes", {}).values()))


def faiss_unavailable_on(nodes: list[dict[str, Any]]) -> str | None:
    """`faiss_unavailable` for the nodes of a node info answer."""
    data_nodes = [
        n for n in nodes if any(r.startswith(DATA_ROLES) for r in n.get("roles", []))
    ] or nodes
    for node in data_nodes:
        name = node.get("name", "?")
        if "opensearch-knn" not in {p.get("name") for p in node.get("plugins", [])}:
            return f"node {name} has no k-NN plugin"
        present = _local_faiss_library(node)
        if present is False:
            return (
                f"node {name} has no faiss native library (its k-NN plugin was installed "
                "without one)"
            )
        if present is None and _integration_test_zip(node):
            return (
                f"node {name} runs the integration-test zip distribution, whose k-NN plugin "
                "carries no native libraries"
            )
    return None


def _integration_test_zip(node: dict[str, Any]) -> bool:
    os_name = str(node.get("os", {}).get("name", ""))
    return node.get("build_type") == "zip" and not os_name.lower().startswith("windows")


def _local_faiss_library(node: dict[str, Any]) -> bool | None:
    """Whether the node's JVM would find faiss's library; None when its install is not here.

    As the JVM looks: `-Djava.library.path` when given, else LD_LIBRARY_PATH and the system
    folders. When the node's environment cannot be read, the plugin's own lib/ folder (where
    distributions put the library, adding it to LD_LIBRARY_PATH) counts as well.
    """
    home = node.get("settings", {}).get("path", {}).get("home")
    if not home:
        return None
    plugin = Path(home) / "plugins" / "opensearch-knn"
    if not plugin.is_dir():
        return None  # another machine's node
    explicit = [
        arg.split("=", 1)[1]
        for arg in node.get("jvm", {}).get("input_arguments", [])
        if arg.startswith("-Djava.library.path=")
    ]
    env = _process_environment(node.get("process", {}).get("id"))
    if explicit:
        folders = explicit[-1].split(os.pathsep)
    elif env is not None:
        folders = [*env.get("LD_LIBRARY_PATH", "").split(os.pathsep), *SYSTEM_LIBRARY_DIRS]
    else:
        folders = [str(plugin / "lib"), *SYSTEM_LIBRARY_DIRS]
    patterns = (f"lib{FAISS_LIBRARY_PREFIX}*", f"{FAISS_LIBRARY_PREFIX}*.dll")
    return any(
        any(Path(folder).glob(pattern)) for folder in folders if folder for pattern in patterns
    )


def _process_environment(pid: object) -> dict[str, str] | None:
    """The environment of a local process, when this user may read it (Linux); else None."""
    try:
        raw = Path(f"/proc/{int(pid)}/environ").read_bytes()  # type: ignore[call-overload]
    except (OSError, TypeError, ValueError):
        return None
    if not raw:
        return None  # a process in the middle of exec(), or one whose environment is hidden
    pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
    return {k.decode(errors="replace"): v.decode(errors="replace") for k, v in pairs}
