"""Ingest with the encoding spread over a Ray cluster (`dotbridge ingest --ray`).

`workers` holds the encoder workers (Ray actors) and `RayEncoder`, the pipeline's window
encoder on them; `local` a Ray instance on loopback for one run, owned by `keeper`, a process
that ends it with the run. Imported only with --ray; ray itself only when a run starts.
"""

from __future__ import annotations

import importlib.util

from bridge.errors import BadInput


def require_ray() -> None:
    """One sentence, before anything else happens, where Ray is not installed."""
    if importlib.util.find_spec("ray") is None:
        raise BadInput("--ray needs Ray: install it with `pip install 'dotbridge[ray]'`.")
