"""A local Ray instance for one run, on loopback, ended with the run however the run ends.

The instance is owned by a keeper process (`keeper.py`) in a session of its own, not by the
driver: when the driver is killed with -9 nothing of it runs any more, so the keeper notices the
end of its stdin and ends Ray and everything Ray started. The driver ends it the same way when
it finishes, and waits until it is gone.

Every Ray socket listens on 127.0.0.1 (node IP 127.0.0.1; checked by the tests with the
processes' listening sockets), and a random token made for this run, passed in the environment
(never on a command line), is needed to talk to it (Ray's token authentication): other users of
the machine can reach loopback, not the token.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import selectors
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from typing import IO, Any

from bridge.errors import IngestFailed
from ingest.distributed.keeper import LOOPBACK_ENV

START_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 60.0
OBJECT_STORE_BYTES = 256 * 1024**2  # a few windows of passages and documents in flight
OBJECT_STORE_PER_WORKER = 64 * 1024**2


class LocalRay:
    """Start with `start()` (returns the address to connect to), end with `stop()`."""

    def __init__(self, *, workers: int = 1, num_cpus: int | None = None) -> None:
        self.num_cpus = num_cpus or os.cpu_count() or 1
        self.object_store_bytes = OBJECT_STORE_BYTES + workers * OBJECT_STORE_PER_WORKER
        self.token = secrets.token_hex(32)
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def env(self) -> dict[str, str]:
        """What a process needs to use this instance: loopback, and the run's token."""
        return {**LOOPBACK_ENV, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": self.token}

    @property
    def keeper_pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self, timeout: float = START_TIMEOUT_S) -> str:
        """Start the keeper and its Ray; the GCS address once Ray is up."""
        temp_dir = tempfile.mkdtemp(prefix="dotbridge-ray-")  # short: Ray's socket paths
        # The keeper's and Ray's start-up chatter, for a failure's sentence; closed by stop().
        self._log = tempfile.TemporaryFile()  # noqa: SIM115
        command = [sys.executable, "-m", "ingest.distributed.keeper", "--temp-dir", temp_dir]
        command += ["--num-cpus", str(self.num_cpus)]
        command += ["--object-store-bytes", str(self.object_store_bytes)]
        self._proc = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,  # held open by this process alone: its end ends Ray
            stdout=subprocess.PIPE,
            stderr=self._log,
            env={**os.environ, **self.env},
            start_new_session=True,
        )
        answer = self._read_answer(timeout)
        if "address" not in answer:
            self.stop()
            raise IngestFailed(
                "The local Ray instance did not start ("
                f"{answer.get('error') or self._log_tail()}): see `ray start --head` work on "
                "this machine, or point --ray at a running cluster."
            )
        return str(answer["address"])

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """End Ray and its processes (the keeper does) and wait until they are gone."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        with contextlib.suppress(OSError):
            if proc.stdin is not None:
                proc.stdin.close()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:  # a keeper that hangs: its process group at least
            with contextlib.suppress(OSError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
        if self._log is not None:
            self._log.close()
            self._log = None

    def _read_answer(self, timeout: float) -> dict[str, Any]:
        assert self._proc is not None and self._proc.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self._proc.stdout, selectors.EVENT_READ)
            if not selector.select(timeout):
                return {"error": f"no answer within {timeout:.0f}s"}
        line = self._proc.stdout.readline()
        try:
            answer = json.loads(line)
        except ValueError:
            return {}
        return answer if isinstance(answer, dict) else {}

    def _log_tail(self) -> str:
        if self._log is None:
            return "it said nothing"
        self._log.seek(0)
        lines = [ln for ln in self._log.read().decode(errors="replace").splitlines() if ln.strip()]
        return lines[-1][:300] if lines else "it said nothing"


def use_in_this_process(env: dict[str, str]) -> Callable[[], None]:
    """Put `env` (`LocalRay.env`) in this process's environment for the driver's connection,
    and return what restores it. Set before the first `import ray`, it decides which address
    this process's own Ray server binds to; where ray was imported earlier (a library user),
    the constant it read then is set too."""
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    constants = sys.modules.get("ray._private.ray_constants")
    patched = constants is not None and getattr(constants, "ENABLE_RAY_CLUSTER", False)
    if patched:
        constants.ENABLE_RAY_CLUSTER = False  # type: ignore[union-attr]
    _reread_ray_config()

    def restore() -> None:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if patched:
            constants.ENABLE_RAY_CLUSTER = True  # type: ignore[union-attr]
        _reread_ray_config()

    return restore


def _reread_ray_config() -> None:
    """Ray's core caches its settings (the authentication mode among them) from the
    environment when loaded; where it is loaded already, have it read them again, as Ray does
    itself when it turns token authentication on."""
    raylet = sys.modules.get("ray._raylet")
    if raylet is not None:
        raylet.Config.initialize("")
