"""`make e2e`: a real OpenSearch Dashboards, driven in Chromium, through `dotbridge serve`.

Steps: prepare Dashboards (cached, see e2e/dashboards.py); start a local OpenSearch node;
ingest a SciFact slice with the packaged MiniLM; add the per-mode aliases; start the gateway;
start Dashboards pointed at the gateway; run the browser tests (pytest + Playwright on the
system Chromium). Everything listens on 127.0.0.1; everything started is stopped at the end,
also on a failure, Ctrl-C or SIGTERM. Screenshots and logs go to the run's output folder.

    python e2e/run.py [--out DIR] [--base-port 9700] [--docs 1000] [-- PYTEST ARGS]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from e2e import dashboards  # noqa: E402

INDEX = "scifact"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")


class Stop(Exception):
    """One sentence for the user."""


def find_chromium() -> str:
    if path := os.environ.get("DOTBRIDGE_CHROMIUM"):
        return path
    for name in CHROMIUM_NAMES:
        if found := shutil.which(name):
            return found
    raise Stop(
        "No Chromium was found: install the system's (apt-get install chromium) or point "
        "DOTBRIDGE_CHROMIUM at a Chromium or Chrome executable."
    )


def check_playwright() -> None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        raise Stop(
            "Playwright is not installed: pip install -e '.[e2e]' (the e2e extra) first."
        ) from None


def scifact_corpus() -> Path:
    from bridge.datasets import check, find

    if problem := check(["scifact"]):
        raise Stop(problem)
    return find("scifact") / "corpus.jsonl"


def dotbridge(*args: str, log: Path | None = None, **kw) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "bridge", *args]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    if log is None:
        return subprocess.run(cmd, env=env, check=False, **kw)
    with log.open("ab") as out:
        return subprocess.run(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, check=False)


def wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise Stop(f"{url} stopped while starting (exit {proc.returncode}); see {log}.")
        try:
            with urllib.request.urlopen(url, timeout=3) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(1)
    raise Stop(f"{url} did not answer within {timeout:.0f} s; see {log}.")


def stop_process(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


@contextlib.contextmanager
def node(port: int, out: Path) -> Iterator[str]:
    log = out / "node.log"
    started = dotbridge("opensearch", "start", "--port", str(port), "--heap", "768m", log=log)
    try:
        if started.returncode:
            raise Stop(f"The local OpenSearch node did not start on port {port}; see {log}.")
        yield f"http://127.0.0.1:{port}"
    finally:
        dotbridge("opensearch", "stop", "--port", str(port), log=log)


def document_count(url: str) -> int:
    try:
        with urllib.request.urlopen(f"{url}/{INDEX}/_count", timeout=10) as r:
            return int(json.load(r)["count"])
    except OSError:
        return 0


def fill(url: str, docs: int, out: Path) -> None:
    """The SciFact slice in INDEX (resumed when present) and its per-mode aliases."""
    corpus = scifact_corpus()
    if document_count(url) < docs:
        log = out / "ingest.log"
        args = ["ingest", str(corpus), "--index", INDEX, "--model", "minilm", "--device", "cpu"]
        done = dotbridge(*args, "--limit", str(docs), "--url", url, log=log)
        if done.returncode:
            raise Stop(f"Ingesting SciFact failed; see {log}.")
    add_time_field(url)
    done = dotbridge("aliases", INDEX, "--url", url, log=out / "aliases.log")
    if done.returncode:
        raise Stop(f"Adding the per-mode aliases failed; see {out / 'aliases.log'}.")


def add_time_field(url: str) -> None:
    """A `ts` date on every document (a day from 2010 on, derived from its id), for the index
    pattern WITH a time field."""

    def call(method: str, path: str, body: dict) -> None:
        req = urllib.request.Request(
            f"{url}{path}",
            data=json.dumps(body).encode(),
            method=method,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=300) as r:
            r.read()

    call("PUT", f"/{INDEX}/_mapping", {"properties": {"ts": {"type": "date"}}})
    script = (
        "long n = 0; for (char c : ctx._id.toCharArray()) { n = (n * 31 + c) % 5000; }"
        "ctx._source.ts = 1262304000000L + n * 86400000L;"
    )
    body = {
        "query": {"bool": {"must_not": [{"exists": {"field": "ts"}}]}},
        "script": {"source": script, "lang": "painless"},
    }
    call("POST", f"/{INDEX}/_update_by_query?refresh=true&conflicts=proceed", body)


@contextlib.contextmanager
def background(cmd: list[str], log: Path, env: dict | None = None) -> Iterator[subprocess.Popen]:
    with log.open("ab") as sink:
        proc = subprocess.Popen(
            cmd, stdout=sink, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    try:
        yield proc
    finally:
        stop_process(proc)


def run(args: argparse.Namespace) -> int:
    chromium = find_chromium()
    check_playwright()
    out = args.out.resolve()
    (out / "screenshots").mkdir(parents=True, exist_ok=True)
    say(f"output: {out}")
    t0 = time.monotonic()
    dashboards.prepare()
    say(f"Dashboards prepared ({time.monotonic() - t0:.0f} s)")
    node_port, gateway_port, osd_port = args.base_port + 1, args.base_port + 2, args.base_port + 3
    with node(node_port, out) as node_url:
        say(f"node at {node_url}; ingesting {args.docs} SciFact documents with MiniLM")
        fill(node_url, args.docs, out)
        gateway_url = f"http://127.0.0.1:{gateway_port}"
        gateway_log = out / "gateway.log"
        serve = [sys.executable, "-m", "bridge", "-v", "serve", "--port", str(gateway_port)]
        serve += ["--url", node_url, "--model", "minilm", "--device", "cpu", "--access-log"]
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
        with background(serve, gateway_log, env) as gateway:
            wait_http(f"{gateway_url}/_dotbridge", gateway, gateway_log, 600)
            say(f"gateway at {gateway_url}; starting Dashboards (the bundles are cached)")
            osd_log = out / "dashboards.log"
            osd = dashboards.start(gateway_url, osd_port, osd_log, timeout=1800)
            try:
                say(f"Dashboards at http://127.0.0.1:{osd_port}; running the browser tests")
                test_env = {
                    **env,
                    "E2E_DASHBOARDS_URL": f"http://127.0.0.1:{osd_port}",
                    "E2E_GATEWAY_URL": gateway_url,
                    "E2E_NODE_URL": node_url,
                    "E2E_INDEX": INDEX,
                    "E2E_OUT": str(out),
                    "E2E_GATEWAY_LOG": str(gateway_log),
                    "DOTBRIDGE_CHROMIUM": chromium,
                }
                cmd = [sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider"]
                cmd += [str(ROOT / "e2e"), "--rootdir", str(ROOT), *args.pytest]
                code = subprocess.run(cmd, env=test_env, cwd=ROOT, check=False).returncode
            finally:
                dashboards.stop_process(osd)
    say(f"done in {time.monotonic() - t0:.0f} s; screenshots in {out / 'screenshots'}")
    return code


def say(text: str) -> None:
    print(f"[e2e] {text}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="e2e/run.py")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    parser.add_argument("--out", type=Path, default=ROOT / "e2e" / "out" / stamp)
    parser.add_argument("--base-port", type=int, default=int(os.environ.get("E2E_PORT", "9700")))
    parser.add_argument("--docs", type=int, default=1000, help="SciFact documents to index")
    parser.add_argument("pytest", nargs="*", help="extra pytest arguments (after --)")
    args = parser.parse_args(argv)

    def terminate(signum, frame):  # SIGTERM: the same clean-up as Ctrl-C
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    try:
        return run(args)
    except (Stop, dashboards.Refused) as exc:
        print(exc, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("[e2e] interrupted: everything started was stopped.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
