"""A local N-node cluster on loopback, OpenSearch or Elasticsearch, from the same home as the
single node.

`dotbridge opensearch start --nodes 3 --port 9200`: nodes on HTTP ports 9200, 9201, 9202, each
with an instance of its own (config, data, logs) under `clusters/<first port>/`, transport ports
chosen free once and kept in the cluster's state file (a restarted node finds the others at the
same addresses), every node cluster-manager-eligible and named in
`cluster.initial_cluster_manager_nodes`. A secured cluster shares one CA, node certificate and
set of users (the security plugin checks the nodes' certificates on the transport layer).
`dotbridge elasticsearch start --nodes 3` builds the same from Elasticsearch's distribution
(`clusters/elasticsearch-<first port>/`, `cluster.initial_master_nodes`; security off, as the
single Elasticsearch node).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from bridge.errors import NodeError
from bridge.home import base_dir
from bridge.nodes import elasticsearch, opensearch
from bridge.nodes.elasticsearch import ElasticsearchNode
from bridge.nodes.opensearch import LocalNode
from bridge.nodes.process import NodeProcess, port_free
from bridge.nodes.security import Credentials

MAX_NODES = 9  # a local cluster for drills and tests, not a data centre


class _Membership:
    """What a cluster's node adds to the single node of its engine: its name, its instance below
    the cluster's folder, and discovery instead of `discovery.type: single-node`."""

    port: int
    cluster_dir: Path
    cluster_settings: dict[str, Any]
    extra_settings: Any

    @property
    def name(self) -> str:
        return f"dotbridge-{self.port}"

    @property
    def log_file(self) -> Path:
        return self.instance / "logs" / f"{self.cluster_settings.get('cluster.name')}.log"

    @property
    def instance(self) -> Path:
        return self.cluster_dir / str(self.port)

    def configure(self, java: Any) -> Path:
        extra = {**self.cluster_settings, **self.extra_settings, "node.name": self.name}
        node = dataclasses.replace(self, extra_settings=extra)  # type: ignore[type-var]
        return super(_Membership, node).configure(java)  # type: ignore[misc]


@dataclass(frozen=True)
class ClusterMember(_Membership, LocalNode):
    """One OpenSearch node of a local cluster: its own instance below the cluster's folder."""

    cluster_dir: Path = field(default=Path("."), compare=False)
    cluster_settings: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def instance(self) -> Path:
        return self.cluster_dir / (f"secure-{self.port}" if self.secure else str(self.port))

    @property
    def credentials(self) -> Credentials:
        """One CA, node certificate and set of users for the whole cluster."""
        return Credentials(self.cluster_dir / ("secure-secrets" if self.secure else "secrets"))

    @property
    def private_paths(self) -> tuple[Path, ...]:
        return ()  # the secrets live beside the instances, not in them


@dataclass(frozen=True)
class ElasticsearchMember(_Membership, ElasticsearchNode):
    """One Elasticsearch node of a local cluster."""

    cluster_dir: Path = field(default=Path("."), compare=False)
    cluster_settings: dict[str, Any] = field(default_factory=dict, compare=False)


# Per engine: its module (defaults), how its settings and APIs name the elected manager.
ENGINES: dict[str, dict[str, Any]] = {
    "opensearch": {
        "module": opensearch,
        "initial": "cluster.initial_cluster_manager_nodes",
        "manager_api": "_cat/cluster_manager",
        "folder": "",
    },
    "elasticsearch": {
        "module": elasticsearch,
        "initial": "cluster.initial_master_nodes",
        "manager_api": "_cat/master",
        "folder": "elasticsearch-",
    },
}


@dataclass(frozen=True)
class LocalCluster:
    """N local nodes of one engine on consecutive HTTP ports from `port` (version and heap:
    the engine's defaults when not given)."""

    nodes: int = 3
    port: int = opensearch.DEFAULT_PORT
    heap: str | None = None
    version: str | None = None
    root: Path | None = None
    secure: bool = False
    maven_url: str | None = None
    transport_port: int | None = None  # None: free ports the OS picks; else N from this one
    engine: str = "opensearch"

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise NodeError(f"No local cluster of {self.engine!r}: choose {', '.join(ENGINES)}.")
        if not 1 <= self.nodes <= MAX_NODES:
            raise NodeError(
                f"--nodes {self.nodes} is out of range: a local cluster has 1 to {MAX_NODES} nodes."
            )
        if self.secure and self.engine != "opensearch":
            raise NodeError("A local Elasticsearch cluster runs with security off: drop --secure.")
        module = ENGINES[self.engine]["module"]
        object.__setattr__(self, "heap", self.heap or module.DEFAULT_HEAP)
        object.__setattr__(self, "version", self.version or module.DEFAULT_VERSION)

    @property
    def command(self) -> str:
        return f"dotbridge {self.engine}"

    @property
    def folder(self) -> Path:
        base = self.root if self.root is not None else base_dir()
        return base / "clusters" / f"{ENGINES[self.engine]['folder']}{self.port}"

    @property
    def state_file(self) -> Path:
        return self.folder / "cluster.json"

    @property
    def ports(self) -> list[int]:
        return [self.port + i for i in range(self.nodes)]

    @property
    def url(self) -> str:
        """Every node's URL, comma-separated: what --url and OPENSEARCH_URL take."""
        return ",".join(member.url for member in self.members())

    def members(self, transport: list[int] | None = None) -> list[Any]:
        """The nodes (ClusterMember or ElasticsearchMember), at the transport ports given, else
        those of the state file."""
        transport = transport or self._state().get("transport") or [0] * self.nodes
        names = [f"dotbridge-{p}" for p in self.ports]
        settings = {
            "cluster.name": f"dotbridge-cluster-{self.port}",
            "discovery.type": None,
            "discovery.seed_hosts": [f"127.0.0.1:{t}" for t in transport],
            ENGINES[self.engine]["initial"]: names,
        }
        member: type[NodeProcess] = ClusterMember
        engine_fields: dict[str, Any] = {"secure": self.secure}
        if self.engine == "elasticsearch":
            member, engine_fields = ElasticsearchMember, {}
        return [
            member(
                version=self.version,
                port=port,
                heap=self.heap,
                root=self.root,
                maven_url=self.maven_url,
                cluster_dir=self.folder,
                cluster_settings={**settings, "transport.port": t},
                **engine_fields,
            )
            for port, t in zip(self.ports, transport, strict=True)
        ]

    def _state(self) -> dict[str, Any]:
        try:
            state = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return {}
        if state.get("nodes") != self.nodes or state.get("secure") != self.secure:
            return {}
        return state

    def found(self) -> dict[str, Any]:
        """The state file of the cluster on this port, whatever its size (for stop)."""
        try:
            return json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return {}

    def start(self, *, timeout: float = 240.0) -> str:
        """Start every node (in parallel: none is healthy before a quorum has formed) and wait
        until all answer with green or yellow health; return the URL list."""
        other = self.found()
        if other and (other.get("nodes"), other.get("secure")) != (self.nodes, self.secure):
            running = [m.port for m in self._members_of(other) if m.running_pid()]
            if running:
                raise NodeError(
                    f"A local cluster of {other.get('nodes')} nodes runs on port {self.port}: "
                    f"stop it first with `{self.command} stop --port {self.port}`."
                )
        members = self.members()
        busy = [m.port for m in members if m.running_pid() is None and not port_free(m.port)]
        if busy:
            raise NodeError(
                f"Port {busy[0]} is already in use: stop whatever listens there or pass --port "
                f"with {self.nodes} free ports from it."
            )
        self.folder.mkdir(parents=True, exist_ok=True)
        transport = self._state().get("transport") or self._transport_ports()
        self.state_file.write_text(
            json.dumps({"nodes": self.nodes, "secure": self.secure, "transport": transport})
        )
        members = self.members(transport)
        first = members[0]
        first.assemble()  # once, before the nodes start side by side
        if self.secure and not first.credentials.complete:
            for member in members:  # new users load only into a new security index
                shutil.rmtree(member.instance / "data", ignore_errors=True)
            first.credentials.generate()
        errors: list[str] = []

        def run(member: Any) -> None:
            try:
                member.start(timeout=timeout)
            except NodeError as exc:
                errors.append(f"node {member.name}: {exc.message}")

        threads = [threading.Thread(target=run, args=(m,)) for m in members]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            self.stop()
            raise NodeError(errors[0])
        return self.url

    def _transport_ports(self) -> list[int]:
        if self.transport_port is None:
            return free_ports(self.nodes, avoid=self.ports)
        ports = [self.transport_port + i for i in range(self.nodes)]
        busy = [p for p in ports if p in self.ports or not port_free(p)]
        if busy:
            raise NodeError(
                f"Transport port {busy[0]} is in use or an HTTP port of the cluster: pass "
                f"--transport-port with {self.nodes} free ports from it."
            )
        return ports

    def _members_of(self, state: dict[str, Any]) -> list[Any]:
        other = dataclasses.replace(
            self, nodes=int(state.get("nodes", 1)), secure=bool(state.get("secure"))
        )
        return other.members(state.get("transport"))

    def stop(self) -> bool:
        """Stop every node of the cluster on this port (whatever its size); whether any ran."""
        state = self.found()
        if not state:
            return False
        members = self._members_of(state)
        stopped = [False] * len(members)

        def run(i: int) -> None:
            stopped[i] = members[i].stop()

        threads = [threading.Thread(target=run, args=(i,)) for i in range(len(members))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return any(stopped)

    def status(self) -> dict[str, Any]:
        """Each node (name, URL, pid or `down`, elected cluster manager) and the cluster health."""
        state = self.found()
        if not state:
            raise NodeError(
                f"No local cluster was started on port {self.port}: start one with "
                f"`{self.command} start --nodes 3 --port {self.port}`."
            )
        members = self._members_of(state)
        manager, health = None, "red (no node answers)"
        for member in members:
            if member.running_pid() is None:
                continue
            try:
                options = member.request_options()
                with requests.Session() as session:
                    session.trust_env = False
                    url = f"{member.url}/_cluster/health"
                    answer = session.get(url, timeout=5, **options).json()
                    health = f"{answer['status']} ({answer['number_of_nodes']} nodes)"
                    url = f"{member.url}/{ENGINES[self.engine]['manager_api']}?format=json"
                    manager = session.get(url, timeout=5, **options).json()[0]["node"]
                break
            except (requests.RequestException, ValueError, KeyError, IndexError):
                continue
        lines = {}
        for member in members:
            pid = member.running_pid()
            role = " (cluster manager)" if member.name == manager else ""
            lines[member.name] = f"{member.url} " + (f"pid {pid}{role}" if pid else "down")
        return {"cluster": f"dotbridge-cluster-{self.port}", "health": health, **lines}


def free_ports(count: int, avoid: list[int]) -> list[int]:
    """`count` loopback ports the OS says are free now, none of `avoid`."""
    ports: list[int] = []
    sockets = []
    try:
        while len(ports) < count:
            sock = socket.socket()
            sockets.append(sock)
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
            if port not in avoid:
                ports.append(port)
    finally:
        for sock in sockets:
            sock.close()
    return ports
