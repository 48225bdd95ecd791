"""The embedded default: a local OpenSearch 3.5.0 node with k-NN, assembled from Maven Central.

The server's integration-test distribution carries the modules k-NN needs (lang-painless,
transport-grpc) and analysis-common for the `english` analyzer; the k-NN plugin zip is unpacked
into it. Files are cached once and checked against their checksums; a warm cache needs no
network.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from bridge.errors import NodeError
from bridge.nodes import maven
from bridge.nodes.files import assemble_home, base_dir
from bridge.nodes.instance import write_config
from bridge.nodes.java import ICU_ARTIFACTS, LOCALE_PROVIDER_OPTION, JavaRuntime, find_java
from bridge.nodes.maven import Artifact
from bridge.nodes.process import Launch, NodeProcess

DEFAULT_VERSION = "3.5.0"
DEFAULT_PORT = 9200
DEFAULT_HEAP = "1g"

# OpenSearch version -> (k-NN plugin version, minimum Java). Maven Central has k-NN builds for
# 3.5.0 and 2.19.1 only, and the 2.19.1 server zip there lacks the modules k-NN needs
# (lang-painless) and the english analyzer's (analysis-common): 3.5.0 is the one that assembles.
RELEASES: dict[str, tuple[str, int]] = {
    "3.5.0": ("3.5.0.0", 21),
}


def artifacts(version: str) -> tuple[Artifact, ...]:
    """The server distribution and the k-NN plugin for an OpenSearch version."""
    knn_version, _ = release(version)
    return (
        Artifact(
            f"org/opensearch/distribution/integ-test-zip/opensearch/{version}/opensearch-{version}.zip"
        ),
        Artifact(
            f"org/opensearch/plugin/opensearch-knn/{knn_version}/opensearch-knn-{knn_version}.zip"
        ),
    )


def release(version: str) -> tuple[str, int]:
    try:
        return RELEASES[version]
    except KeyError:
        valid = ", ".join(RELEASES)
        raise NodeError(
            f"OpenSearch {version} has no k-NN plugin on Maven Central that dotbridge knows; "
            f"choose --version from: {valid}."
        ) from None


@dataclass(frozen=True)
class LocalNode(NodeProcess):
    """One local OpenSearch node: its home below the base directory, its port and heap."""

    product: ClassVar[str] = "OpenSearch"
    command: ClassVar[str] = "opensearch"
    url_env: ClassVar[str] = "OPENSEARCH_URL"

    version: str = DEFAULT_VERSION
    port: int = DEFAULT_PORT
    heap: str = DEFAULT_HEAP
    root: Path | None = None
    maven_url: str | None = None

    @property
    def base(self) -> Path:
        return self.root if self.root is not None else base_dir()

    @property
    def downloads(self) -> Path:
        return self.base / "downloads"

    @property
    def home(self) -> Path:
        return self.base / f"opensearch-{self.version}"

    @property
    def instance(self) -> Path:
        """Config, data and logs of the node on this port; the home itself stays read-only."""
        return self.base / "nodes" / str(self.port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def fetch(self, items: tuple[Artifact, ...] | None = None) -> list[Path]:
        """Download what is not cached yet; each file is checked before it is kept."""
        return maven.fetch(items or artifacts(self.version), self.downloads, self.maven_url)

    def assemble(self) -> Path:
        """Unpack server and plugin into the node home once; the config is rewritten every start."""
        if (self.home / ".dotbridge-assembled").exists():
            return self.home
        server_zip, knn_zip = self.fetch()
        return assemble_home(self.home, server_zip, {"opensearch-knn": knn_zip})

    def configure(self, java: JavaRuntime) -> Path:
        """Write the instance's config from the distribution's defaults plus ours."""
        home = self.instance
        settings = {
            "cluster.name": "dotbridge",
            "node.name": "dotbridge-local",
            "network.host": "127.0.0.1",
            "http.port": self.port,
            "discovery.type": "single-node",
            "path.data": str(home / "data"),
            "path.logs": str(home / "logs"),
            "cluster.routing.allocation.disk.threshold_enabled": False,
            "action.auto_create_index": False,
        }
        config = write_config(
            self.home,
            home,
            settings_file="opensearch.yml",
            settings=settings,
            heap=self.heap,
            java=java,
        )
        self._locale_provider(java, config)
        return config

    def _locale_provider(self, java: JavaRuntime, config: Path) -> None:
        """Add ICU4J's locale provider where the runtime lacks the Thai break iterator."""
        if java.has_thai_segmentation:
            return
        jars = [self.home / "lib" / a.filename for a in ICU_ARTIFACTS]
        for source, jar in zip(self.fetch(ICU_ARTIFACTS), jars, strict=True):
            if not jar.exists():
                shutil.copyfile(source, jar)
        option = config / "jvm.options.d" / "dotbridge-locale.options"
        option.write_text(LOCALE_PROVIDER_OPTION + "\n")

    def prepare(self) -> Launch:
        java = find_java(release(self.version)[1], self.base)
        self.assemble()
        self.instance.mkdir(parents=True, exist_ok=True)
        config = self.configure(java)
        env = {
            **os.environ,
            "OPENSEARCH_JAVA_HOME": str(java.home),
            "OPENSEARCH_PATH_CONF": str(config),
            "HOME": str(self.instance),
        }
        env.pop("JAVA_HOME", None)
        env.pop("OPENSEARCH_JAVA_OPTS", None)
        # 3.x starts a java agent from agent/ relative to the cwd: run in the home.
        return Launch(argv=[str(self.home / "bin" / "opensearch")], cwd=self.home, env=env)
