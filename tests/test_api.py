"""The public Python API: `from bridge import ...` gives every documented name."""

from __future__ import annotations

import subprocess
import sys

import pytest

import bridge


@pytest.mark.parametrize("name", bridge.__all__)
def test_exported_names_resolve(name):
    assert getattr(bridge, name) is not None


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError):
        bridge.NoSuchThing  # noqa: B018


def test_cli_imports_without_torch():
    code = "import sys, bridge.cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_wheel_carries_every_package(tmp_path):
    """`pip install .` (the Dockerfile's way) must ship every subpackage, not only the top ones."""
    import zipfile
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
        + ["-w", str(tmp_path), str(repo)],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("dotbridge-*.whl")
    shipped = {name.rsplit("/", 1)[0] for name in zipfile.ZipFile(wheel).namelist()}
    packages = {
        str(init.parent.relative_to(repo))
        for top in ("bridge", "ingest", "mappings")
        for init in (repo / top).rglob("__init__.py")
    }
    assert packages <= shipped, sorted(packages - shipped)
