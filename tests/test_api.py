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
