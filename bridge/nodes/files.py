"""Where downloads and node homes live, and how a distribution is unpacked into a home."""

from __future__ import annotations

import shutil
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path

from bridge.errors import NodeError

MIN_FREE_BYTES = 1_500_000_000
ASSEMBLED_MARKER = ".dotbridge-assembled"


def check_disk(path: Path) -> None:
    """Refuse to start a download or an unpack that would fill the disk."""
    free = shutil.disk_usage(path if path.exists() else path.parent).free
    if free < MIN_FREE_BYTES:
        raise NodeError(
            f"Only {free / 1e9:.1f} GB free at {path}; the node needs "
            f"{MIN_FREE_BYTES / 1e9:.1f} GB: free some space or set DOTBRIDGE_HOME elsewhere."
        )


def unzip(archive: Path, target: Path) -> None:
    try:
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(target)
    except (zipfile.BadZipFile, OSError) as exc:
        raise NodeError(
            f"Could not unpack {archive} ({exc}): delete it so it is downloaded again."
        ) from exc


def assemble_home(
    home: Path,
    server_zip: Path,
    plugins: Mapping[str, Path] | None = None,
    customize: Callable[[Path], None] | None = None,
) -> Path:
    """Unpack a server zip (and plugin zips into plugins/NAME) into `home`, once.

    The work happens in a staging folder beside the home, which is renamed into place at the
    end, so an interrupted unpack never leaves a half-assembled home behind.
    """
    marker = home / ASSEMBLED_MARKER
    if marker.exists():
        return home
    check_disk(home.parent)
    staging = home.parent / f".staging-{home.name}"
    shutil.rmtree(staging, ignore_errors=True)
    unzip(server_zip, staging)
    (inner,) = [p for p in staging.iterdir() if p.is_dir()]
    for name, plugin_zip in (plugins or {}).items():
        unzip(plugin_zip, inner / "plugins" / name)
    for script in (inner / "bin").iterdir():
        script.chmod(0o755)  # zipfile drops the exec bit
    if customize is not None:
        customize(inner)
    shutil.rmtree(home, ignore_errors=True)
    inner.rename(home)
    shutil.rmtree(staging, ignore_errors=True)
    marker.touch()
    return home
