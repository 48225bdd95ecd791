"""The models a gateway serves, and which of them an index needs (read from its `_meta`).

The gateway serves only the models it was started with: it never loads a model named in an
index's `_meta` (a caller who can write a mapping must not make the server load files). An
index's mapping is read with the caller's own credentials and cached briefly per caller.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bridge.errors import IndexMismatch
from bridge.gateway.batcher import CHUNK_CPU, MicroBatcher
from bridge.gateway.errors import BadRequest, GatewayError
from bridge.gateway.limits import clipped
from bridge.gateway.upstream import Upstream, identity_key
from bridge.gateway.vector_cache import VectorCache
from bridge.indexes import (
    IndexSpec,
    check_compatible,
    same_checkpoint,
    setting_differences,
    spec_from_mapping,
)

if TYPE_CHECKING:
    from bridge.encoder import Encoder


def model_name(model: str) -> str:
    """A served model's name in the gateway's URLs: its directory's or hub id's last part."""
    return Path(str(model).rstrip("/")).name or str(model)


@dataclass
class ServedModel:
    """One loaded model: its name in the gateway's URLs, its spec, and its batching worker."""

    name: str
    encoder: Encoder
    spec: IndexSpec
    batcher: MicroBatcher
    cache: VectorCache = dataclasses.field(default_factory=lambda: VectorCache(0, 0))

    @classmethod
    def load(
        cls,
        encoder: Encoder,
        *,
        max_batch: int,
        max_wait: float,
        max_queue: int = 8192,
        timeout: float | None = None,
        nice: int = 0,
        chunk: int = CHUNK_CPU,
        cache: VectorCache | None = None,
    ) -> ServedModel:
        name = model_name(encoder.model_id)
        batcher = MicroBatcher(
            {"query": encoder.encode_queries, "passage": encoder.encode_passages},
            max_batch=max_batch,
            max_wait=max_wait,
            max_queue=max_queue,
            timeout=timeout,
            nice=nice,
            chunk=chunk,
            name=name,
        )
        served = cls(name=name, encoder=encoder, spec=IndexSpec.of(encoder), batcher=batcher)
        if cache is not None:
            served.cache = cache
        return served

    async def vectors(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Each distinct query text's vector: from the cache, else encoded together in one
        shared batch (and cached)."""
        found: dict[str, np.ndarray] = {}
        missing: list[str] = []
        for text in dict.fromkeys(texts):
            row = self.cache.get(text)
            if row is None:
                missing.append(text)
            else:
                found[text] = row
        if missing:
            window = clipped(missing, getattr(self.encoder, "query_max_length", 512))
            rows = await self.batcher.encode(window, "query")
            encoded = dict(zip(missing, rows, strict=True))
            self.cache.put_many(encoded.items())
            found.update(encoded)
        return found

    async def passages(self, texts: Sequence[str]) -> np.ndarray:
        """Passage vectors in order (each text cut to the model's window before tokenizing)."""
        window = clipped(list(texts), getattr(self.encoder, "passage_max_length", 512))
        return await self.batcher.encode(window, "passage")

    def public(self) -> dict[str, Any]:
        """What any caller may know of the model: no paths or devices."""
        spec = self.spec
        return {
            "name": self.name,
            "dimension": spec.dimension,
            "similarity": spec.similarity.value,
            "normalize": spec.normalize,
            "pooling": spec.pooling,
            "runtime": spec.runtime,
            "quantization": spec.quantization,
            "encoder": self.batcher.stats.as_dict(),
            "query_cache": self.cache.describe(),  # counters only, like the encoder's
        }

    def describe(self) -> dict[str, Any]:
        spec = self.spec
        return {
            "name": self.name,
            "model": spec.model,
            "pooling": spec.pooling,
            "normalize": spec.normalize,
            "similarity": spec.similarity.value,
            "dimension": spec.dimension,
            "weights_sha256": spec.weights_sha256,
            "runtime": spec.runtime,
            "quantization": spec.quantization,
            "device": self.encoder.device,
            "encoder": self.batcher.stats.as_dict(),
            "query_cache": self.cache.describe(),
        }


# The settings an index records that `dotbridge serve` takes as a flag.
SERVE_FLAGS = {"pooling": "pooling", "quantization": "quantize"}


class Models:
    """The served models, found by name (model API) or by an index's spec (searches)."""

    def __init__(self, served: Sequence[ServedModel]) -> None:
        if not served:
            raise ValueError("a gateway needs at least one model")
        self.served = list(served)
        names = [m.name for m in self.served]
        for i, model in enumerate(self.served):  # two checkpoints of one name: number them
            if names.count(model.name) > 1:
                model.name = f"{model.name}-{i + 1}"

    def by_name(self, name: str) -> ServedModel:
        for model in self.served:
            if model.name == name:
                return model
        known = ", ".join(m.name for m in self.served)
        raise GatewayError(404, f"This gateway serves no model {name!r}; it serves: {known}.")

    def for_index(self, index: str, stored: IndexSpec) -> ServedModel:
        """The served model that made the index's vectors; BadRequest in one sentence if none."""
        for model in self.served:
            try:
                check_compatible(index, stored, model.spec)
            except IndexMismatch:
                continue
            return model
        for model in self.served:  # the same checkpoint, served with other settings
            if same_checkpoint(stored, model.spec):
                diffs = setting_differences(stored, model.spec)
                differ = ", ".join(
                    f"{name} {was} (index) vs {now} (served)" for name, was, now in diffs
                )
                flags = " ".join(
                    f"--{SERVE_FLAGS[n]} {was}" for n, was, _ in diffs if n in SERVE_FLAGS
                )
                advice = (
                    f"start `dotbridge serve` with --model {stored.model} {flags}"
                    if flags
                    else "serve it with the index's settings"
                )
                raise BadRequest(
                    f"Index {index!r} was built with model {stored.model}, which this gateway "
                    f"serves as {model.name}, but with other settings ({differ}): {advice}."
                )
        int8 = f", {stored.quantization} weights" if stored.quantization != "none" else ""
        # Quantized vectors are another model: name the setting when either side is quantized.
        quantized = any(m.spec.quantization != "none" for m in self.served)
        quantize = f" --quantize {stored.quantization}" if int8 or quantized else ""
        raise BadRequest(
            f"Index {index!r} was built with model {stored.model} ({stored.pooling} pooling, "
            f"{stored.similarity.value}, dimension {stored.dimension}{int8}), which this gateway "
            f"does not serve: start `dotbridge serve` with --model {stored.model}{quantize}."
        )

    def close(self) -> None:
        for model in self.served:
            model.batcher.close()


@dataclass(frozen=True)
class IndexInfo:
    """What a search target holds: its spec and the served model that fits it."""

    target: str
    spec: IndexSpec
    model: ServedModel
    shards: int = 1  # over every index behind the target: more than one means BM25 needs DFS


@dataclass(frozen=True)
class NotDotbridge:
    """A target whose mapping has no dotbridge `_meta` (or a broken one): the reason why."""

    reason: str


class IndexResolver:
    """Reads a target's mappings with the caller's headers; caches the answer `ttl` seconds."""

    def __init__(self, upstream: Upstream, models: Models, *, ttl: float = 5.0) -> None:
        self.upstream = upstream
        self.models = models
        self.ttl = ttl
        self._cache: dict[tuple, tuple[float, IndexInfo | NotDotbridge]] = {}

    async def resolve(
        self, target: str, raw_target: str, caller: Mapping[str, str]
    ) -> IndexInfo | NotDotbridge:
        key = (raw_target, identity_key(caller))
        now = time.monotonic()
        cached = self._cache.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        # UpstreamError (404, 401, 403...) goes back to the caller as the cluster gave it.
        mapping = await self.upstream.call("GET", f"/{raw_target}/_mapping", caller)
        result = self.read(target, mapping)
        if isinstance(result, IndexInfo):
            settings = await self.upstream.call(
                "GET", f"/{raw_target}/_settings/index.number_of_shards", caller
            )
            shards = sum(
                int(body["settings"]["index"]["number_of_shards"]) for body in settings.values()
            )
            result = dataclasses.replace(result, shards=shards)
        if self.ttl > 0:
            if len(self._cache) > 10_000:  # many callers: start afresh rather than grow
                self._cache.clear()
            self._cache[key] = (now + self.ttl, result)
        return result

    def read(self, target: str, mapping: dict) -> IndexInfo | NotDotbridge:
        """The one spec of every index behind the target, and the model that fits it."""
        specs: list[IndexSpec] = []
        for index, body in sorted(mapping.items()):
            try:
                specs.append(spec_from_mapping(index, body.get("mappings", {})))
            except IndexMismatch as exc:
                return NotDotbridge(exc.message)
        if not specs:
            return NotDotbridge(f"{target!r} names no index.")
        first = specs[0]
        for other in specs[1:]:
            if other.vector_field != first.vector_field:
                raise BadRequest(
                    f"{target!r} spans indexes with different vector fields: search one at a time."
                )
            try:
                check_compatible(target, other, first)
            except IndexMismatch:
                raise BadRequest(
                    f"{target!r} spans indexes built with different models: search one at a time."
                ) from None
        return IndexInfo(target=target, spec=first, model=self.models.for_index(target, first))
