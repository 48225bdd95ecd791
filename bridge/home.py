"""dotbridge's cache directory: node downloads and homes, ONNX exports, fetched datasets.

Standard library only at import (platformdirs when installed), so that `make test` can find the
cache before anything is installed.
"""

from __future__ import annotations

import os
from pathlib import Path


def base_dir() -> Path:
    """DOTBRIDGE_HOME, else the user's cache (root: the system's, since the local nodes run as
    an unprivileged user, who cannot enter /root)."""
    if env := os.environ.get("DOTBRIDGE_HOME"):
        return Path(env).expanduser()
    try:
        import platformdirs
    except ImportError:  # before the install: platformdirs' answers on Linux
        if os.geteuid() == 0:
            return Path("/var/cache/dotbridge")
        xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        return Path(xdg) / "dotbridge"
    if os.geteuid() == 0:
        return Path(platformdirs.site_cache_dir("dotbridge"))
    return Path(platformdirs.user_cache_dir("dotbridge"))
