"""Encoder workers on a Ray cluster: Ray actors that each load the model once (one GPU each,
or a share of the CPUs) and turn windows of records into the documents' JSON.

`RayEncoder` is the pipeline's `WindowEncoder`: the driver reads, triages and drops ids already
present exactly as a plain run does, then hands each window to the next worker in turn, keeps
two windows per worker in flight, and takes the results back in the order it sent them, so the
writer indexes in input order (the earlier of two lines with one id wins, as in a plain run).
A worker builds each document's `_source` (vector and origin included) and serialises it: that
is the costliest step of indexing (about 0.5 ms per 768-float vector) and it scales with the
workers; the driver's `BulkWriter` sends the JSON as it is and keeps every guarantee (create,
never overwrite; 409s settled from the stored origin; retries; rejects).

A worker whose process dies is restarted by Ray (`RESTARTS` times) and its windows run again;
the run says so in a warning. Actors belong to the driver's job: when the driver ends, however
it ends, Ray ends them, also on a user's cluster.
"""

from __future__ import annotations

import collections
import dataclasses
import ipaddress
import json
import logging
import math
import os
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from bridge.config import ModelSettings
from bridge.errors import BadInput, ConnectionFailed, DotbridgeError, IngestFailed
from ingest.bulk import document_source
from ingest.distributed.keeper import LOOPBACK_ENV
from ingest.distributed.local import LocalRay, use_in_this_process
from ingest.pipeline import Encoded
from ingest.readers import Record

log = logging.getLogger(__name__)

RESTARTS = 3
"""How often Ray restarts a worker whose process died before the run gives up."""
IN_FLIGHT_PER_WORKER = 2
READY_TIMEOUT_S = 600.0
"""How long the workers may take to be placed and load the model (a hub download included)."""
# Passed to the workers of a user's cluster (a local instance's inherit this environment).
PASSED_ENV = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_DISABLE_PROGRESS_BARS")


@dataclass(frozen=True)
class WorkerPlan:
    """What each encoder worker asks of the cluster, and how it runs."""

    workers: int
    device: str  # "cuda" (one GPU each) or "cpu"
    num_cpus: float
    num_gpus: int
    threads: int | None  # torch threads of a CPU worker; None: torch's own choice

    def describe(self) -> str:
        gpu = ", 1 GPU" if self.num_gpus else ""
        return f"{self.workers} workers x ({self.num_cpus:g} CPU{gpu})"


def plan_workers(resources: dict[str, float], *, device: str, workers: int | None) -> WorkerPlan:
    """One GPU per worker where the cluster has GPUs (and --device allows), else a CPU share.

    A CPU worker asks for half of its fair share of the cluster's CPUs (at most 1): Ray counts
    CPUs as slots, and workers that each take a whole one can leave no slot for anything else
    (measured: 2 such workers on a 2-CPU cluster deadlocked; half a CPU each did not). Its
    torch threads follow the real share instead, so one worker still uses every core.
    """
    if device == "mps" or device.startswith("cuda:"):
        raise BadInput(
            f"--device {device} does not go with --ray, where Ray gives each worker its own GPU: "
            "use --device auto (a GPU each where the cluster has them), cuda or cpu."
        )
    gpus = int(resources.get("GPU", 0))
    cpus = float(resources.get("CPU", 0))
    if device == "cuda" and gpus == 0:
        raise BadInput(
            "--device cuda: the Ray cluster has no GPU; use --device cpu (or auto), or point "
            "--ray at a cluster with GPUs."
        )
    use_gpu = gpus > 0 and device in ("auto", "cuda")
    count = workers or (gpus if use_gpu else 1)
    if use_gpu and count > gpus:
        raise BadInput(
            f"--workers {count} needs {count} GPUs (one each) and the Ray cluster has {gpus}: "
            f"give --workers {gpus} or fewer, or --device cpu."
        )
    share = min(1.0, cpus / count) / 2 if cpus else 0.0
    return WorkerPlan(
        workers=count,
        device="cuda" if use_gpu else "cpu",
        num_cpus=max(0.01, math.floor(share * 100) / 100) if cpus else 0.0,
        num_gpus=1 if use_gpu else 0,
        threads=None if use_gpu else max(1, int(cpus // count)),
    )


class EncoderWorker:
    """A Ray actor: the model, loaded once on its first call (again after a restart)."""

    def __init__(self, settings: ModelSettings, threads: int | None) -> None:
        self.settings, self.threads = settings, threads
        self.encoder: Any = None

    def load(self) -> dict[str, Any]:
        """Load the model; the spec it makes and where this worker runs."""
        import socket

        from bridge.indexes import IndexSpec

        encoder = self._loaded()
        return {
            "spec": IndexSpec.of(encoder),
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "device": str(getattr(encoder, "device", self.settings.device)),
        }

    def encode(
        self, rows: list[tuple[Any, ...]], run_id: str, vector_field: str
    ) -> tuple[list[str], int, float, int]:
        """The `_source` JSON of each record (a Record's fields as a tuple), how many texts were
        cut, the model's seconds, and this process's pid (a new one after a restart)."""
        encoder = self._loaded()
        records = [Record(*row) for row in rows]
        started = time.perf_counter()
        vectors, truncated = encoder.encode_passages(
            [r.passage for r in records], return_truncated=True
        )
        seconds = time.perf_counter() - started
        sources = [
            # As both engines' clients serialise a body, so the bytes sent are the same.
            json.dumps(
                document_source(r, vector_field, v, run_id),
                ensure_ascii=False,
                separators=(",", ":"),
            )
            for r, v in zip(records, vectors, strict=True)
        ]
        return sources, int(truncated.sum()), seconds, os.getpid()

    def _loaded(self) -> Any:
        if self.encoder is None:
            if self.threads:
                import torch

                torch.set_num_threads(self.threads)
            self.encoder = self.settings.load()
        return self.encoder


@dataclass
class WorkerStats:
    """One worker's share of a run: windows and records encoded, the model's seconds."""

    host: str = ""
    device: str = ""
    windows: int = 0
    records: int = 0
    seconds: float = 0.0
    restarts: int = 0


class RayEncoder:
    """The pipeline's `WindowEncoder` on Ray's encoder workers; `close()` ends them (and a
    local instance)."""

    def __init__(
        self,
        ray: Any,
        actors: list[Any],
        loaded: list[dict[str, Any]],
        *,
        batch_size: int,
        plan: WorkerPlan,
        local: LocalRay | None,
        restore: Callable[[], None],
    ) -> None:
        self._ray, self._actors, self._local, self._restore = ray, actors, local, restore
        self.spec = loaded[0]["spec"]
        self.batch_size, self.plan = batch_size, plan
        self.worker_stats = [WorkerStats(info["host"], info["device"]) for info in loaded]
        self._pids = [info["pid"] for info in loaded]
        self._pending: collections.deque[tuple[list[Record], Any, int]] = collections.deque()
        self._next = 0
        self._closed = False

    def submit(self, records: list[Record], run_id: str) -> Iterator[Encoded]:
        slot = self._next % len(self._actors)
        self._next += 1
        rows = [(r.line, r.doc_id, r.title, r.text, r.file) for r in records]
        ref = self._actors[slot].encode.remote(rows, run_id, self.spec.vector_field)
        self._pending.append((records, ref, slot))
        while len(self._pending) >= IN_FLIGHT_PER_WORKER * len(self._actors):
            yield self._collect()

    def drain(self) -> Iterator[Encoded]:
        while self._pending:
            yield self._collect()

    def close(self) -> None:
        """End the workers and the driver's connection, and a local instance with them."""
        if self._closed:
            return
        self._closed = True
        self._pending, self._actors = collections.deque(), []
        try:
            # The workers are the driver's: ending its connection ends them (and, unlike
            # killing them first, leaves no "task failed, will be retried" lines on stdout).
            self._ray.shutdown()
        finally:
            if self._local is not None:
                self._local.stop()
            self._restore()

    def _collect(self) -> Encoded:
        records, ref, slot = self._pending.popleft()
        sources, truncated, seconds, pid = self._get(ref)
        stats = self.worker_stats[slot]
        if pid != self._pids[slot]:
            self._pids[slot] = pid
            stats.restarts += 1
            log.warning(
                "encoder worker %d (%s) died and Ray restarted it; its windows were encoded "
                "again, nothing is lost",
                slot,
                stats.host,
            )
        stats.windows += 1
        stats.records += len(records)
        stats.seconds += seconds
        return Encoded(records, sources, truncated, seconds)

    def _get(self, ref: Any) -> Any:
        from ray import exceptions

        resume = "rerun the same command: it resumes where this run stopped"
        try:
            return self._ray.get(ref)
        except exceptions.RayActorError as exc:
            raise IngestFailed(
                f"An encoder worker's process ended {RESTARTS + 1} times ({_first_line(exc)}); "
                f"see the Ray cluster's logs, then {resume}."
            ) from exc
        except exceptions.RayTaskError as exc:
            cause = getattr(exc, "cause", None) or exc
            raise IngestFailed(
                f"An encoder worker failed ({type(cause).__name__}: {_first_line(cause)}): "
                f"fix that, then {resume}."
            ) from exc
        except exceptions.RayError as exc:  # Ray's own: memory, a lost object or node
            raise IngestFailed(
                f"Ray failed ({type(exc).__name__}: {_first_line(exc)}); {resume}."
            ) from exc


def start_ray_encoder(
    settings: ModelSettings,
    *,
    address: str | None = None,
    workers: int | None = None,
    ready_timeout: float = READY_TIMEOUT_S,
) -> RayEncoder:
    """Connect to the Ray cluster at `address` (None: start a local instance on loopback for
    this run), start the encoder workers and wait until each has loaded the model."""
    local = LocalRay(workers=workers or 1) if address is None else None
    if local is not None:
        restore = use_in_this_process(local.env)
    elif _on_loopback(address):  # a cluster of this machine alone, started on 127.0.0.1
        restore = use_in_this_process(LOOPBACK_ENV)
    else:
        restore = _nothing
    actors: list[Any] = []
    ray: Any = None
    try:
        import ray

        target = local.start() if local is not None else address
        _connect(ray, target, local is None)
        plan = plan_workers(ray.cluster_resources(), device=settings.device, workers=workers)
        worker_settings = dataclasses.replace(settings, device=plan.device)
        actor_class = ray.remote(EncoderWorker)
        for _ in range(plan.workers):
            actors.append(
                actor_class.options(
                    num_cpus=plan.num_cpus,
                    num_gpus=plan.num_gpus,
                    max_restarts=RESTARTS,
                    max_task_retries=RESTARTS,
                    scheduling_strategy="SPREAD",
                ).remote(worker_settings, plan.threads)
            )
        loaded = _wait_loaded(ray, actors, plan, ready_timeout)
        return RayEncoder(
            ray,
            actors,
            loaded,
            batch_size=settings.batch_size,
            plan=plan,
            local=local,
            restore=restore,
        )
    except BaseException:
        if ray is not None:
            ray.shutdown()  # ends the workers started so far, which are this driver's
        if local is not None:
            local.stop()
        restore()
        raise


def _nothing() -> None:
    pass


def _on_loopback(address: str | None) -> bool:
    """Whether `address` (host:port, ray://host:port) names this machine's loopback: then the
    driver's own Ray server must bind there too, or the cluster cannot reach it."""
    host = (address or "").removeprefix("ray://").rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _connect(ray: Any, address: str | None, remote: bool) -> None:
    env = {key: os.environ[key] for key in PASSED_ENV if key in os.environ}
    try:
        with warnings.catch_warnings():
            # Ray's notices of what a future version will change are no news for the user.
            warnings.simplefilter("ignore", FutureWarning)
            ray.init(
                address=address,
                log_to_driver=False,
                configure_logging=False,
                runtime_env={"env_vars": env} if remote and env else None,
            )
    except Exception as exc:
        where = f"at {address!r}" if remote else "on this machine"
        raise ConnectionFailed(
            f"No Ray cluster answers {where} ({_first_line(exc)}): give the head's address "
            "(host:port, ray://host:10001 or auto), or leave it out for a local instance."
        ) from exc


def _wait_loaded(
    ray: Any, actors: list[Any], plan: WorkerPlan, timeout: float
) -> list[dict[str, Any]]:
    from ray import exceptions

    try:
        loaded = ray.get([actor.load.remote() for actor in actors], timeout=timeout)
    except exceptions.GetTimeoutError as exc:
        raise IngestFailed(
            f"The encoder workers were not ready within {timeout:.0f}s ({plan.describe()} "
            "asked of the Ray cluster; `ray status` shows what is free): lower --workers or "
            "free the cluster, then rerun."
        ) from exc
    except exceptions.RayTaskError as exc:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, DotbridgeError):  # the model's own sentence, said on the worker
            raise type(cause)(cause.message) from exc
        raise IngestFailed(
            f"An encoder worker could not load the model ({_first_line(cause or exc)})."
        ) from exc
    specs = {info["spec"] for info in loaded}
    if len(specs) > 1:
        raise BadInput(
            "The encoder workers loaded different models ("
            + "; ".join(sorted(spec.describe() for spec in specs))
            + "): give every node of the Ray cluster the same copy of the model."
        )
    return loaded


def _first_line(exc: object) -> str:
    text = str(exc).strip()
    return " ".join(text.splitlines()[0].split())[:300] if text else type(exc).__name__
