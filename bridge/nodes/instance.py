"""An instance directory: the home's config plus ours, data and logs, one per node and port.

The home (the unpacked distribution) stays read-only and shared; everything a running node
writes lives in its instance, and the config is rewritten from the home's on every start.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bridge.nodes.java import JavaRuntime, adapt_jvm_options


def single_node_settings(instance: Path, *, port: int, node_name: str) -> dict[str, Any]:
    """What every local node is: one node on loopback, writing into its instance, creating no
    index by itself, indifferent to the disk's fill level."""
    return {
        "cluster.name": "dotbridge",
        "node.name": node_name,
        "network.host": "127.0.0.1",
        "http.port": port,
        "discovery.type": "single-node",
        "path.data": str(instance / "data"),
        "path.logs": str(instance / "logs"),
        "cluster.routing.allocation.disk.threshold_enabled": False,
        "action.auto_create_index": False,
    }


def write_config(
    home: Path,
    instance: Path,
    *,
    settings_file: str,
    settings: Mapping[str, Any],
    heap: str,
    java: JavaRuntime,
) -> Path:
    """Copy the home's config into the instance and write ours over it; return the config dir."""
    config = instance / "config"
    shutil.rmtree(config, ignore_errors=True)
    shutil.copytree(home / "config", config)
    (instance / "data").mkdir(exist_ok=True)
    (instance / "logs").mkdir(exist_ok=True)
    lines = [f"{key}: {json.dumps(value)}" for key, value in settings.items()]
    (config / settings_file).write_text("\n".join(lines) + "\n")
    (config / "jvm.options.d").mkdir(exist_ok=True)
    (config / "jvm.options.d" / "dotbridge-heap.options").write_text(f"-Xms{heap}\n-Xmx{heap}\n")
    options = config / "jvm.options"
    options.write_text(
        adapt_jvm_options(options.read_text(), java, logs=instance / "logs", data=instance / "data")
    )
    return config
