"""A local search-engine node as a background process: start, wait for health, stop.

What is common to every engine: a state file per instance, a process started in its own session
(as an unprivileged user when dotbridge runs as root, since OpenSearch and Elasticsearch both
refuse root), a health wait that watches the process too, SIGTERM then SIGKILL, port checks and
the tail of the node's log. An engine module says what to run and how to ask for health.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import requests

from bridge.errors import NodeError
from bridge.home import base_dir

SERVICE_USER = "nobody"
# Variables that are the client's business, never the node's (it would carry them in its
# environment for as long as it runs).
CLIENT_SECRETS = ("OPENSEARCH_PASSWORD", "ELASTICSEARCH_PASSWORD", "ELASTIC_PASSWORD")


@dataclass(frozen=True)
class Launch:
    """What to run for a node: the command, its working directory and its environment."""

    argv: Sequence[str]
    cwd: Path
    env: Mapping[str, str]


class NodeProcess:
    """Start, watch and stop one node; engines subclass it and fill in the hooks below."""

    product: ClassVar[str] = "the node"  # for messages: "OpenSearch", "Elasticsearch"
    command: ClassVar[str] = ""  # the CLI group that manages it: "opensearch"
    url_env: ClassVar[str] = ""  # the variable that points a client at it: "OPENSEARCH_URL"

    # Provided by the engine (dataclass fields or properties).
    port: int
    version: str
    root: Path | None  # where downloads, homes and instances live; None: base_dir()

    @property
    def base(self) -> Path:
        return self.root if self.root is not None else base_dir()

    @property
    def downloads(self) -> Path:
        return self.base / "downloads"

    @property
    def instance(self) -> Path:
        raise NotImplementedError

    @property
    def url(self) -> str:
        raise NotImplementedError

    def prepare(self) -> Launch:
        """Download, assemble and configure what is missing; return what to run."""
        raise NotImplementedError

    @property
    def private_paths(self) -> tuple[Path, ...]:
        """Paths in the instance that stay the caller's, never the service user's (secrets)."""
        return ()

    def request_options(self) -> dict[str, Any]:
        """What a request to the node needs besides its URL (TLS and auth, for a secured one)."""
        return {}

    def healthy(self) -> bool:
        """Whether the node answers its health check now."""
        return http_healthy(self.url, **self.request_options())

    def status(self) -> dict[str, Any]:
        """Pid, URL, version and health of the running node, from the node itself."""
        pid = self.running_pid()
        if pid is None:
            raise NodeError(
                f"No local {self.product} node runs on port {self.port}: start one with "
                f"`dotbridge {self.command} start --port {self.port}`."
            )
        try:
            health = _get_json(f"{self.url}/_cluster/health", **self.request_options())
            nodes = _get_json(f"{self.url}/_nodes/_local", **self.request_options())
        except (requests.RequestException, ValueError) as exc:
            raise NodeError(
                f"The local {self.product} node (pid {pid}) does not answer at {self.url} "
                f"({type(exc).__name__}): see {self.log_file}."
            ) from exc
        (info,) = nodes["nodes"].values()
        return {
            "url": self.url,
            "pid": pid,
            "version": info.get("version"),
            "java": info.get("jvm", {}).get("version"),
            "cluster": health.get("cluster_name"),
            "health": health.get("status"),
            "home": str(self.instance),
        }

    @property
    def state_file(self) -> Path:
        return self.instance / "node.json"

    @property
    def log_file(self) -> Path:
        return self.instance / "logs" / "dotbridge.log"

    @property
    def console_log(self) -> Path:
        return self.instance / "logs" / "console.log"

    def running_pid(self) -> int | None:
        state = self._state()
        if state and alive(state["pid"]):
            return int(state["pid"])
        return None

    def _state(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return None

    def start(self, *, timeout: float = 180.0) -> str:
        """Start the node in the background, wait until it is healthy; return its URL."""
        if pid := self.running_pid():
            state = self._state() or {}
            if state.get("port") == self.port and self.healthy():
                return self.url
            raise NodeError(
                f"A dotbridge node is already running (pid {pid}, port {state.get('port')}): "
                f"run `dotbridge {self.command} stop` first."
            )
        if not port_free(self.port):
            raise NodeError(
                f"Port {self.port} is already in use: stop whatever listens there or pass "
                f"--port with a free port (and {self.url_env} to match)."
            )
        launch = self.prepare()
        user = service_user()
        if user is not None:
            chown_tree(self.instance, user, keep=self.private_paths)
        env = {k: v for k, v in launch.env.items() if k not in CLIENT_SECRETS}
        self.console_log.parent.mkdir(parents=True, exist_ok=True)
        with self.console_log.open("ab") as out:
            if user is not None:
                os.chown(self.console_log, user.pw_uid, user.pw_gid)
            proc = subprocess.Popen(
                list(launch.argv),
                cwd=launch.cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                user=user.pw_uid if user else None,
                group=user.pw_gid if user else None,
                extra_groups=[] if user else None,
            )
        self.state_file.write_text(
            json.dumps({"pid": proc.pid, "port": self.port, "version": self.version})
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                self.state_file.unlink(missing_ok=True)
                raise NodeError(
                    f"{self.product} exited during start-up (code {proc.returncode}); last "
                    f"lines of its log:\n{self.tail_log()}"
                )
            if self.healthy():
                return self.url
            time.sleep(1)
        self.stop()
        raise NodeError(
            f"{self.product} did not become healthy within {timeout:.0f}s; last lines of its "
            f"log:\n{self.tail_log()}"
        )

    def stop(self, *, timeout: float = 60.0) -> bool:
        """Stop the node cleanly (SIGTERM, then SIGKILL); True when one was running."""
        state = self._state()
        if not state:
            return False
        pid = int(state["pid"])
        was_running = alive(pid)
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0)):
            if not alive(pid):
                break
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, sig)
            deadline = time.monotonic() + wait
            while alive(pid) and time.monotonic() < deadline:
                time.sleep(0.2)
        if alive(pid):
            raise NodeError(f"{self.product} (pid {pid}) did not stop: kill it by hand.")
        self.state_file.unlink(missing_ok=True)
        return was_running

    def tail_log(self, lines: int = 20) -> str:
        for candidate in (self.log_file, self.console_log):
            if candidate.exists() and candidate.stat().st_size:
                return "\n".join(candidate.read_text(errors="replace").splitlines()[-lines:])
        return "(no log written)"


def service_user() -> pwd.struct_passwd | None:
    """The search engines refuse to run as root, so root runs them as an unprivileged user."""
    if os.geteuid() != 0:
        return None
    name = os.environ.get("DOTBRIDGE_NODE_USER", SERVICE_USER)
    try:
        return pwd.getpwnam(name)
    except KeyError:
        raise NodeError(
            f"Running as root, but user {name!r} does not exist to run the node: set "
            "DOTBRIDGE_NODE_USER to an unprivileged user."
        ) from None


def chown_tree(root: Path, user: pwd.struct_passwd, keep: Sequence[Path] = ()) -> None:
    """Hand the instance to the service user, except the paths in `keep` (and what is below)."""
    for path in [root, *root.rglob("*")]:
        if any(path == k or k in path.parents for k in keep):
            continue
        with contextlib.suppress(FileNotFoundError):
            os.chown(path, user.pw_uid, user.pw_gid, follow_symlinks=False)
    # The user must reach the instance (and the home beside it) through its parents.
    for parent in root.parents:
        if not parent.stat().st_mode & 0o001:
            raise NodeError(
                f"{parent} is not reachable by user {user.pw_name}: set DOTBRIDGE_HOME to a "
                "directory outside it (for example /var/cache/dotbridge)."
            )


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As the JVM does: connections of a stopped node lingering in TIME_WAIT do not count.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours counts as gone.
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return True


def http_healthy(url: str, **request_options: Any) -> bool:
    """Whether `_cluster/health` answers 200 with green or yellow (request_options: auth, TLS)."""
    # The node is on loopback: never route the check through a proxy from the environment.
    with requests.Session() as session:
        session.trust_env = False
        try:
            resp = session.get(f"{url}/_cluster/health", timeout=2, **request_options)
            return resp.status_code == 200 and resp.json().get("status") in ("green", "yellow")
        except (requests.RequestException, ValueError):
            return False


def _get_json(url: str, **request_options: Any) -> dict[str, Any]:
    with requests.Session() as session:
        session.trust_env = False  # loopback: no proxy from the environment
        resp = session.get(url, timeout=10, **request_options)
        resp.raise_for_status()
        return resp.json()


def iter_java_processes(instance: Path) -> Iterator[int]:
    """PIDs of java processes started with this instance's config (to check nothing is left)."""
    marker = f"path.conf={instance}/config"
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace").replace("\0", " ")
        except OSError:
            continue
        if "java" in cmdline and marker in cmdline:
            yield int(entry.name)
