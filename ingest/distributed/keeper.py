"""The keeper of a local Ray instance: starts it for one run and ends it, with every process
it started, when the driver goes, however the driver goes.

`local.LocalRay` runs `python -m ingest.distributed.keeper` in a session of its own (Ctrl-C
at the terminal reaches the driver, which ends the run in order) and keeps the write end of the
keeper's stdin. The keeper starts Ray (`ray.init`, every socket on 127.0.0.1), prints one JSON
line (`{"address": ...}` or `{"error": ...}`) and reads stdin until its end: the driver closed
it, exited, crashed or was killed with -9. Then it shuts Ray down and sweeps its session: any
process still in it (Ray's agents outlive a raylet killed hard; its workers set their own
process group, not their own session) gets SIGTERM, then SIGKILL.

Standard library and ray only: it must start fast and never load the model.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import sys
import time
from typing import Any

# Read by ray when it is imported: node IP 127.0.0.1, so every Ray server listens on loopback
# only (on Linux Ray otherwise binds its gRPC servers to 0.0.0.0); and no usage reports.
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}
SWEEP_GRACE_S = 3.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--temp-dir", required=True)
    parser.add_argument("--num-cpus", type=int, required=True)
    parser.add_argument("--object-store-bytes", type=int, required=True)
    args = parser.parse_args(argv)
    os.environ.update(LOOPBACK_ENV)
    os.environ.pop("RAY_ADDRESS", None)  # else ray.init() joins the cluster it names
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, _exit)
    ray: Any = None
    try:
        import ray

        context = ray.init(
            num_cpus=args.num_cpus,
            object_store_memory=args.object_store_bytes,
            include_dashboard=False,
            _temp_dir=args.temp_dir,
            log_to_driver=False,
            configure_logging=False,
        )
        _report({"address": context.address_info["gcs_address"]})
        sys.stdin.buffer.read()  # until the driver closes it, or dies
    except SystemExit:
        pass
    except BaseException as exc:  # told to the driver, which says it in one sentence
        _report({"error": f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"})
    finally:
        if ray is not None:
            with contextlib.suppress(Exception):
                ray.shutdown()
        sweep_session()
        shutil.rmtree(args.temp_dir, ignore_errors=True)
    return 0


def _exit(signum: int, frame: object) -> None:
    raise SystemExit(0)


def _report(message: dict[str, str]) -> None:
    with contextlib.suppress(OSError):  # the driver may be gone already
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()


def session_processes(sid: int, exclude: int | None = None) -> list[int]:
    """The live processes of session `sid` (Linux: from /proc; zombies are already ended),
    all but `exclude`."""
    found = []
    with contextlib.suppress(OSError):
        for name in os.listdir("/proc"):
            if not name.isdigit() or int(name) == exclude:
                continue
            with contextlib.suppress(OSError, ValueError, IndexError):
                with open(f"/proc/{name}/stat", encoding="ascii", errors="replace") as f:
                    # pid (comm) state ppid pgrp session ...; comm may hold spaces or ')'.
                    fields = f.read().rsplit(")", 1)[1].split()
                if fields[0] != "Z" and int(fields[3]) == sid:
                    found.append(int(name))
    return found


def _reap() -> None:
    """Collect the exit status of this keeper's ended children, so that none stays a zombie."""
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass


def sweep_session() -> None:
    """End every other process of this keeper's session: SIGTERM, then SIGKILL."""
    me = os.getpid()
    sid = os.getsid(0)
    if sid != me:  # not a session leader: the session is someone else's; touch nothing
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in session_processes(sid, me):
            with contextlib.suppress(OSError):
                os.kill(pid, sig)
        deadline = time.monotonic() + SWEEP_GRACE_S
        while session_processes(sid, me) and time.monotonic() < deadline:
            _reap()
            time.sleep(0.05)
    _reap()


if __name__ == "__main__":
    sys.exit(main())
