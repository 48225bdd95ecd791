"""A local Elasticsearch node, assembled from Maven Central like the OpenSearch one.

The artifact is Elasticsearch's integration-test distribution (8.19.21, SHA-512 published
beside it and pinned here). It carries only the apm, transport-netty4 and x-pack core/security
modules: no ML, no painless, no `english` analyzer, and `GET /` answers 405, so health is
asked of `_cluster/health`. Its licence file offers AGPL v3, SSPL v1 or the Elastic License 2.0;
the x-pack modules are under the Elastic License 2.0 alone.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import bridge.nodes.maven as maven
from bridge.errors import NodeError
from bridge.nodes.files import assemble_home
from bridge.nodes.instance import single_node_settings, write_config
from bridge.nodes.java import JavaRuntime, find_java
from bridge.nodes.maven import Artifact
from bridge.nodes.process import Launch, NodeProcess

DEFAULT_VERSION = "8.19.21"
DEFAULT_PORT = 9201  # beside OpenSearch's default 9200
DEFAULT_HEAP = "1g"

# Elasticsearch version -> minimum Java. 8.19 runs on Java 17 (measured with the machine's).
RELEASES: dict[str, int] = {
    "8.19.21": 17,
}


def artifacts(version: str) -> tuple[Artifact, ...]:
    """The server distribution for an Elasticsearch version."""
    release(version)
    return (
        Artifact(
            "org/elasticsearch/distribution/integ-test-zip/elasticsearch/"
            f"{version}/elasticsearch-{version}.zip"
        ),
    )


def release(version: str) -> int:
    """The minimum Java of a known version."""
    try:
        return RELEASES[version]
    except KeyError:
        valid = ", ".join(RELEASES)
        raise NodeError(
            f"Elasticsearch {version} is not a version dotbridge can assemble; choose "
            f"--version from: {valid}."
        ) from None


@dataclass(frozen=True)
class ElasticsearchNode(NodeProcess):
    """One local Elasticsearch node: single node, loopback, security and ML off."""

    product: ClassVar[str] = "Elasticsearch"
    command: ClassVar[str] = "elasticsearch"
    url_env: ClassVar[str] = "ELASTICSEARCH_URL"

    version: str = DEFAULT_VERSION
    port: int = DEFAULT_PORT
    heap: str = DEFAULT_HEAP
    root: Path | None = None
    maven_url: str | None = None
    # More elasticsearch.yml settings (a cluster's discovery); they win over ours, None drops one.
    extra_settings: Mapping[str, object] = field(default_factory=dict, compare=False)

    @property
    def home(self) -> Path:
        return self.base / f"elasticsearch-{self.version}"

    @property
    def instance(self) -> Path:
        """Config, data and logs of the node on this port (apart from OpenSearch's)."""
        return self.base / "nodes" / f"elasticsearch-{self.port}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start_message(self, url: str) -> str:
        """Where the started node is, and how to point dotbridge at it."""
        return (
            f"Elasticsearch {self.version} is up at {url} (home {self.home})\n"
            f"Connect with: --url {url} (or OPENSEARCH_URL={url}); the engine is detected."
        )

    def fetch(self, items: tuple[Artifact, ...] | None = None) -> list[Path]:
        """Download what is not cached yet; each file is checked before it is kept."""
        return maven.fetch(items or artifacts(self.version), self.downloads, self.maven_url)

    def assemble(self) -> Path:
        if (self.home / ".dotbridge-assembled").exists():
            return self.home
        (server_zip,) = self.fetch()
        return assemble_home(self.home, server_zip)

    def configure(self, java: JavaRuntime) -> Path:
        home = self.instance
        settings = {
            **single_node_settings(home, port=self.port, node_name="dotbridge-elasticsearch"),
            # A local test node on loopback: no TLS, no users (the zip has no ML module at all).
            "xpack.security.enabled": False,
            **self.extra_settings,
        }
        settings = {k: v for k, v in settings.items() if v is not None}  # None: leave it out
        return write_config(
            self.home,
            home,
            settings_file="elasticsearch.yml",
            settings=settings,
            heap=self.heap,
            java=java,
        )

    def prepare(self) -> Launch:
        java = find_java(release(self.version), self.base, env_vars=("ES_JAVA_HOME", "JAVA_HOME"))
        self.assemble()
        self.instance.mkdir(parents=True, exist_ok=True)
        config = self.configure(java)
        tmp = self.instance / "tmp"
        tmp.mkdir(exist_ok=True)
        env = {
            **os.environ,
            "ES_JAVA_HOME": str(java.home),
            "ES_PATH_CONF": str(config),
            "ES_TMPDIR": str(tmp),
            "HOME": str(self.instance),
        }
        env.pop("JAVA_HOME", None)
        env.pop("ES_JAVA_OPTS", None)
        return Launch(argv=[str(self.home / "bin" / "elasticsearch")], cwd=self.home, env=env)
