"""What moved: the installed versions against the lock (`make test-latest` prints it first).

python .ci/what_moved.py constraints.txt
"""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)", line)
        if match:
            pins[canonical(match[1])] = match[2]
    return pins


def main(lock: str) -> int:
    pins = locked(Path(lock))
    installed = {canonical(d.metadata["Name"]): d.version for d in metadata.distributions()}
    moved = sorted(
        (name, pins[name], version)
        for name, version in installed.items()
        if name in pins and pins[name] != version
    )
    ours = ("pip", "dotbridge")
    new = sorted(name for name in installed if name not in pins and name not in ours)
    print(f"Against {lock}: {len(moved)} moved, {len(new)} not in the lock.")
    for name, old, version in moved:
        print(f"  {name}: {old} -> {version}")
    for name in new:
        print(f"  {name}: new, {installed[name]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "constraints.txt"))
