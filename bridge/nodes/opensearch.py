"""The embedded default: a local OpenSearch 3.5.0 node with k-NN, assembled from Maven Central.

The server's integration-test distribution carries the modules k-NN needs (lang-painless,
transport-grpc) and analysis-common for the `english` analyzer; the k-NN plugin zip is unpacked
into it. Files are cached once and checked against their checksums; a warm cache needs no
network. A secured node (`secure=True`) also gets the security plugin, in a home of its own so
that the plain node stays plain, and an instance of its own per port (see security.py).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import bridge.nodes.maven as maven
import bridge.nodes.security as security
from bridge.config import ConnectionSettings
from bridge.errors import NodeError
from bridge.nodes.files import assemble_home
from bridge.nodes.instance import single_node_settings, write_config
from bridge.nodes.java import ICU_ARTIFACTS, LOCALE_PROVIDER_OPTION, JavaRuntime, find_java
from bridge.nodes.maven import Artifact
from bridge.nodes.process import Launch, NodeProcess
from bridge.nodes.security import Credentials

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
    secure: bool = False  # TLS, users and roles (the security plugin)
    # More opensearch.yml settings (e.g. a tiny write queue for a 429 drill); they win over ours.
    extra_settings: Mapping[str, object] = field(default_factory=dict, compare=False)

    @property
    def home(self) -> Path:
        suffix = "-secure" if self.secure else ""
        return self.base / f"opensearch-{self.version}{suffix}"

    @property
    def instance(self) -> Path:
        """Config, data and logs of the node on this port; the home itself stays read-only."""
        return self.base / "nodes" / (f"secure-{self.port}" if self.secure else str(self.port))

    @property
    def url(self) -> str:
        return f"{'https' if self.secure else 'http'}://127.0.0.1:{self.port}"

    @property
    def credentials(self) -> Credentials:
        """The secured node's CA, certificates and generated passwords (mode 0600)."""
        return Credentials(self.instance / "secrets")

    @property
    def private_paths(self) -> tuple[Path, ...]:
        return (self.credentials.folder,) if self.secure else ()

    def request_options(self) -> dict[str, object]:
        if not self.secure or not self.credentials.complete:
            return {}
        admin = security.ADMIN_USER
        return {
            "verify": str(self.credentials.ca),
            "auth": (admin, self.credentials.password(admin)),
        }

    def connection_settings(self, user: str = security.ADMIN_USER) -> ConnectionSettings:
        """Settings to connect to this node (as `user`, with its password, on a secured one)."""
        if not self.secure:
            return ConnectionSettings(url=self.url)
        return ConnectionSettings(
            url=self.url,
            user=user,
            password=self.credentials.password(user),
            ca_certs=str(self.credentials.ca),
        )

    def fetch(self, items: tuple[Artifact, ...] | None = None) -> list[Path]:
        """Download what is not cached yet; each file is checked before it is kept."""
        if items is None:
            items = artifacts(self.version)
            if self.secure:
                items = (*items, security.security_artifact())
        return maven.fetch(items, self.downloads, self.maven_url)

    def assemble(self) -> Path:
        """Unpack server and plugins into the home once; the config is rewritten every start."""
        if (self.home / ".dotbridge-assembled").exists():
            return self.home
        server_zip, knn_zip, *rest = self.fetch()
        plugins = {"opensearch-knn": knn_zip}
        if not self.secure:
            return assemble_home(self.home, server_zip, plugins)
        plugins[security.SECURITY_PLUGIN] = rest[0]
        return assemble_home(
            self.home,
            server_zip,
            plugins,
            customize=lambda home: security.adapt_plugin(home, self.version),
        )

    def with_security(self, secure: bool) -> LocalNode:
        """The plain (False) or secured (True) node on the same port and base."""
        return dataclasses.replace(self, secure=secure)

    def stop_any(self) -> bool:
        """Stop the node on this port, plain or secured; whether one was running."""
        return any([node.stop() for node in (self, self.with_security(True))])

    def start_message(self, url: str) -> str:
        """Where the started node is, and (secured) where its CA and passwords are."""
        lines = [f"OpenSearch {self.version} is up at {url} (home {self.home})"]
        if self.secure:
            creds = self.credentials
            admin = creds.password_file(security.ADMIN_USER)
            lines += [
                f"CA certificate:  {creds.ca}",
                f"admin password:  {admin} (user admin)",
                f"reader password: {creds.password_file('reader')} (user reader, read-only)",
                f"Connect with: OPENSEARCH_URL={url} OPENSEARCH_CA_CERTS={creds.ca} "
                f'OPENSEARCH_USER=admin OPENSEARCH_PASSWORD="$(cat {admin})"',
            ]
        return "\n".join(lines)

    def reset(self) -> None:
        """Forget this node's data and (secured) its certificates and users; it must be stopped."""
        if pid := self.running_pid():
            raise NodeError(
                f"The node on port {self.port} is running (pid {pid}): stop it first with "
                f"`dotbridge opensearch stop --port {self.port}`."
            )
        shutil.rmtree(self.instance, ignore_errors=True)

    def configure(self, java: JavaRuntime) -> Path:
        """Write the instance's config from the distribution's defaults plus ours."""
        home = self.instance
        settings = single_node_settings(home, port=self.port, node_name="dotbridge-local")
        if self.secure:
            settings.update(security.security_settings())
        settings.update(self.extra_settings)
        settings = {k: v for k, v in settings.items() if v is not None}  # None: leave it out
        config = write_config(
            self.home,
            home,
            settings_file="opensearch.yml",
            settings=settings,
            heap=self.heap,
            java=java,
        )
        self._locale_provider(java, config)
        if self.secure:
            security.write_security_config(config, self.credentials)
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
        if self.secure and not self.credentials.complete:
            # New users are loaded only into a new security index: start from empty data.
            shutil.rmtree(self.instance / "data", ignore_errors=True)
            self.credentials.generate()
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
