"""An index's life: what it was built with (its `_meta`), the check that an encoder fits it,
creating it from the engine's index body (once `knn_engines` says the cluster can serve its k-NN
engine), and pausing its refresh during a bulk load."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opensearchpy import OpenSearch

from bridge.backends import backend_of, client_errors, is_not_found, status_of
from bridge.errors import BadInput, IndexMismatch, error_reason, error_type
from bridge.knn_engines import check_engine, index_engine
from mappings import VECTOR_FIELD, Similarity

if TYPE_CHECKING:
    from bridge.config import ModelSettings
    from bridge.encoder import Encoder

log = logging.getLogger(__name__)

META_KEY = "dotbridge"
PAUSED_REFRESH_KEY = "paused_refresh_interval"


@dataclass(frozen=True, kw_only=True)
class IndexSpec:
    """The model settings an index's vectors were made with; stored as `_meta.dotbridge`."""

    model: str
    pooling: str
    normalize: bool
    similarity: Similarity
    dimension: int
    vector_field: str = VECTOR_FIELD
    weights_sha256: str | None = None  # identifies the checkpoint however `model` was spelled
    # What computed the vectors. Indexes made before these fields were torch float32.
    runtime: str = "torch"  # torch and onnx float32 agree to 1e-4: the same model
    quantization: str = "none"  # int8 vectors differ (cosine ~0.995): another model
    dtype: str = "float32"
    # The copy the HNSW graph searches (config.COMPRESSIONS); the float32 vectors are kept and
    # score every final hit. Not compared with an encoder: the same model's vectors either way.
    compression: str = "none"

    @classmethod
    def of(cls, encoder: Encoder) -> IndexSpec:
        model = encoder.model_id
        if Path(model).is_dir():
            model = str(Path(model).resolve())  # the same directory, however it was spelled
        return cls(
            model=model,
            pooling=encoder.pooling,
            normalize=encoder.normalize,
            similarity=encoder.similarity,
            dimension=encoder.dim,
            weights_sha256=encoder.fingerprint,
            runtime=encoder.runtime,
            quantization=encoder.quantize,
            dtype=encoder.dtype,
        )

    def describe(self) -> str:
        """`MODEL (cls pooling, dot, weights sha256 1234abcd5678)`, for messages."""
        weights = f", weights sha256 {self.weights_sha256[:12]}" if self.weights_sha256 else ""
        normalised = ", normalised" if self.normalize else ""
        int8 = f", {self.quantization} weights" if self.quantization != "none" else ""
        return (
            f"{self.model} ({self.pooling} pooling{normalised}, {self.similarity}{int8}{weights})"
        )

    def meta(self) -> dict[str, Any]:
        return {META_KEY: {**asdict(self), "similarity": self.similarity.value}}

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> IndexSpec:
        values = dict(meta[META_KEY])
        values["similarity"] = Similarity.parse(values["similarity"])
        known = {k: v for k, v in values.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def read_spec(client: OpenSearch, index: str) -> IndexSpec | None:
    """The spec stored in an index; None when the index does not exist.

    An index that exists but was not made by dotbridge, or whose vector field disagrees with its
    `_meta`, is a mismatch: its vectors cannot be trusted to match any model.
    """
    mappings = read_mappings(client, index)
    return None if mappings is None else spec_from_mapping(index, mappings)


def read_mappings(client: OpenSearch, index: str) -> dict[str, Any] | None:
    """An index's `mappings`; None when the index does not exist."""
    try:
        mapping = client.indices.get_mapping(index=index)
    except client_errors() as exc:
        if not is_not_found(exc):
            raise
        return None
    (body,) = mapping.values()
    return body.get("mappings", {})


def spec_from_mapping(index: str, mappings: dict[str, Any]) -> IndexSpec:
    """The spec in one index's `mappings` (a `_mapping` response's body); pure.

    The gateway reads mappings itself (with its caller's credentials) and shares this check.
    """
    meta = mappings.get("_meta") or {}
    if META_KEY not in meta:
        raise IndexMismatch(
            f"Index {index!r} was not created by dotbridge (no _meta.{META_KEY}): "
            "choose another --index name or delete that index."
        )
    spec = IndexSpec.from_meta(meta)
    field = mappings.get("properties", {}).get(spec.vector_field, {})
    # OpenSearch's knn_vector says `dimension`, Elasticsearch's dense_vector `dims`.
    dimension = field.get("dimension", field.get("dims"))
    if dimension != spec.dimension:
        raise IndexMismatch(
            f"Index {index!r} has a {spec.vector_field!r} field of dimension "
            f"{dimension} but its _meta says {spec.dimension}: recreate the index."
        )
    return spec


# What both engines refuse in an index name (MetadataCreateIndexService.validateIndexOrAliasName).
_INDEX_NAME_FORBIDDEN = '\\/*?"<>| ,#:'
MAX_INDEX_NAME_BYTES = 255


def check_index_name(index: str) -> str:
    """The name unchanged; BadInput in one sentence when the cluster would refuse it."""
    problem = None
    if not index:
        problem = "is empty"
    elif index != index.lower():
        problem = "has upper-case letters"
    elif bad := sorted({c for c in index if c in _INDEX_NAME_FORBIDDEN}):
        problem = "contains " + " ".join(repr(c) for c in bad)
    elif index.startswith(("_", "-", "+")):
        problem = f"starts with {index[0]!r}"
    elif index in (".", ".."):
        problem = "is . or .."
    elif len(index.encode()) > MAX_INDEX_NAME_BYTES:
        problem = f"is longer than {MAX_INDEX_NAME_BYTES} bytes"
    if problem:
        hint = f" ({index.lower()!r})" if problem == "has upper-case letters" else ""
        raise BadInput(
            f"Index name {index!r} {problem}, which OpenSearch and Elasticsearch refuse: use "
            f"lower-case letters, digits, '-', '_' and '.'{hint}."
        )
    return index


def missing_index(index: str) -> BadInput:
    return BadInput(
        f"Index {index!r} does not exist: build it first with `dotbridge ingest` "
        f"(--index {index}), or pass the --index of an existing one."
    )


def encoder_for_index(client: OpenSearch, index: str, settings: ModelSettings) -> Encoder:
    """The encoder to query `index` with: the model its `_meta` records, unless `settings`
    names one, which must then be that model (same weights, pooling and similarity)."""
    stored = read_spec(client, index)
    if stored is None:
        raise missing_index(index)
    encoder = settings.load(stored, index=index)
    check_compatible(index, stored, IndexSpec.of(encoder))
    return encoder


SETTINGS = ("pooling", "normalize", "similarity", "dimension", "quantization")


def setting_differences(stored: IndexSpec, wanted: IndexSpec) -> list[tuple[str, Any, Any]]:
    """(setting, the index's value, the encoder's value) for each setting besides the weights
    in which the two differ."""
    return [
        (name, getattr(stored, name), getattr(wanted, name))
        for name in SETTINGS
        if getattr(stored, name) != getattr(wanted, name)
    ]


def same_checkpoint(stored: IndexSpec, wanted: IndexSpec) -> bool:
    """Whether the encoder runs the weights that made the index (by hash, else by name)."""
    if stored.weights_sha256 is None or wanted.weights_sha256 is None:
        return stored.model == wanted.model
    return stored.weights_sha256 == wanted.weights_sha256


def check_compatible(index: str, stored: IndexSpec, wanted: IndexSpec) -> None:
    """Raise IndexMismatch naming every setting in which the index and the encoder differ.

    The weights decide which model it is: the same SHA-256 under another path or id is the same
    model, and other weights are another model even under the same name (retrained weights saved
    to the same directory, a hub id whose revision moved). An index that recorded no hash is
    matched by model name. Runtime and dtype are recorded but not compared (torch and ONNX
    float32 give the same vectors within float tolerance); int8 quantization is another model.
    """
    diffs = [
        f"{name} {was!s} (index) vs {now!s} (encoder)"
        for name, was, now in setting_differences(stored, wanted)
    ]
    if stored.weights_sha256 is None:
        if stored.model != wanted.model:
            diffs.insert(0, f"model {stored.model} (index) vs {wanted.model} (encoder)")
    elif wanted.weights_sha256 is None:
        diffs.insert(0, f"the encoder's weights ({wanted.model}) cannot be checked against them")
    elif stored.weights_sha256 != wanted.weights_sha256:
        if stored.model == wanted.model:
            diffs.insert(
                0,
                f"the weights now at {wanted.model} (sha256 {wanted.weights_sha256[:12]}) are "
                "not the ones that made the index (retrained, or another revision)",
            )
        else:
            diffs.insert(0, f"model {stored.model} (index) vs {wanted.model} (encoder)")
    if diffs:
        advice = "that model (--model with a copy of those weights)"
        if stored.quantization != wanted.quantization:
            runtime = " --runtime onnx" if stored.quantization != "none" else ""
            advice += f" and --quantize {stored.quantization}{runtime}"
        raise IndexMismatch(
            f"Index {index!r} was built by {stored.describe()}, not by this encoder "
            f"({'; '.join(diffs)}): use {advice}, or another --index."
        )


@dataclass(frozen=True, kw_only=True)
class IndexOptions:
    """How a new index is created; ignored when the index exists."""

    engine: str = "lucene"
    analyzer: str = "english"
    m: int = 16
    ef_construction: int = 128
    shards: int = 1
    replicas: int | None = None  # None: replicas_for(the cluster found)
    compression: str | None = None  # None: as the existing index has it, `none` for a new one


def replicas_for(client: Any) -> int:
    """The default replica count: 1 on a cluster with 2 or more data nodes (any one node may
    die without losing a shard, and reads go on), else 0 (a replica on one node never starts
    and leaves the index yellow)."""
    data_nodes = client.cluster.health().get("number_of_data_nodes", 1)
    return 1 if data_nodes >= 2 else 0


def ensure_index(
    client: OpenSearch, index: str, spec: IndexSpec, options: IndexOptions | None = None
) -> bool:
    """Create the index for `spec`, or check that the existing one matches; True when created.

    Either way the cluster must be able to serve the index's k-NN engine: writing to a faiss
    index on a node without faiss's native library brings the whole node down.
    """
    options = options or IndexOptions()
    mappings = read_mappings(client, index)
    if mappings is not None:
        stored = spec_from_mapping(index, mappings)
        check_compatible(index, stored, spec)
        if options.compression not in (None, stored.compression):
            raise BadInput(
                f"Index {index!r} was built with --compression {stored.compression}, not "
                f"{options.compression}: leave --compression out to add to it, or choose another "
                "--index."
            )
        check_engine(client, index_engine(mappings, stored.vector_field), index=index)
        return False
    backend = backend_of(client)
    spec = replace(spec, compression=options.compression or "none")
    body = backend.index_body(
        dimension=spec.dimension,
        similarity=spec.similarity,
        meta=spec.meta(),
        engine=options.engine,
        analyzer=available_analyzer(client, options.analyzer),
        m=options.m,
        ef_construction=options.ef_construction,
        shards=options.shards,
        replicas=replicas_for(client) if options.replicas is None else options.replicas,
        compression=spec.compression,
    )  # Elasticsearch's refuses an OpenSearch engine before the cluster is asked
    check_engine(client, options.engine)
    try:
        client.indices.create(index=index, body=body)
    except client_errors() as exc:
        if status_of(exc) != 400:
            raise
        if error_type(exc) == "resource_already_exists_exception":  # another worker was first
            return ensure_index(client, index, spec, options)
        raise BadInput(
            f"{backend.product} refused to create index {index!r} ({error_reason(exc)}): check "
            "--engine (faiss needs a cluster with its native library) and the other index options."
        ) from exc
    return True


FALLBACK_ANALYZER = "standard"


def available_analyzer(client: Any, analyzer: str) -> str:
    """The analyzer if the cluster has it, else `standard` (said once, in a warning).

    Elasticsearch's integration-test distribution has no `english` analyzer (its
    analysis-common module is left out); `standard` is in every distribution.
    """
    if analyzer == FALLBACK_ANALYZER:
        return analyzer
    try:
        client.indices.analyze(body={"analyzer": analyzer, "text": "dotbridge"})
    except client_errors() as exc:
        if status_of(exc) != 400:
            raise
        log.warning(
            "%s has no %r analyzer (%s): the text fields use %r instead.",
            backend_of(client).product,
            analyzer,
            error_reason(exc),
            FALLBACK_ANALYZER,
        )
        return FALLBACK_ANALYZER
    return analyzer


# ---- refresh ----------------------------------------------------------------------------------


@contextlib.contextmanager
def refresh_paused(client: OpenSearch, index: str, *, pause: bool = True) -> Iterator[None]:
    """Turn refresh off for the run and restore it afterwards, also when the run fails.

    The original interval is kept in the index's _meta while paused, so a run that was killed
    before it could restore it leaves the next run able to. Only a run that fills the index
    alone may pause: the pause is a read-modify-write of the index's settings, and two writers
    would take each other's `-1` for the original. With `pause=False` (one of several `--shard`
    workers) refresh is left as it is, but a pause left behind by a killed run is restored.
    The documents are made visible (refreshed) at the end either way.
    """
    if not pause:
        restore_refresh(client, index)
        yield
        client.indices.refresh(index=index)
        return
    meta = _meta(client, index)
    ours = meta.setdefault(META_KEY, {})
    if PAUSED_REFRESH_KEY in ours:
        original = ours[PAUSED_REFRESH_KEY]
    else:
        (body,) = client.indices.get_settings(index=index).values()
        original = body["settings"]["index"].get("refresh_interval")  # None: the default
        ours[PAUSED_REFRESH_KEY] = original
        client.indices.put_mapping(index=index, body={"_meta": meta})
    client.indices.put_settings(index=index, body={"index": {"refresh_interval": "-1"}})
    try:
        yield
    except BaseException:
        # The run's own error is what the user must see; a failure to restore (the node is
        # down, say) is only logged: the next run restores the interval kept in _meta.
        try:
            restore_refresh(client, index)
        except Exception as exc:
            log.warning(
                "could not restore the refresh interval of %s (%s); the next run restores it",
                index,
                error_reason(exc),
            )
        raise
    restore_refresh(client, index)
    client.indices.refresh(index=index)


def restore_refresh(client: OpenSearch, index: str) -> bool:
    """Restore a refresh interval paused by an earlier run (kept in _meta); True when one was."""
    meta = _meta(client, index)
    ours = meta.get(META_KEY, {})
    if PAUSED_REFRESH_KEY not in ours:
        return False
    original = ours.pop(PAUSED_REFRESH_KEY)
    client.indices.put_settings(index=index, body={"index": {"refresh_interval": original}})
    client.indices.put_mapping(index=index, body={"_meta": meta})
    return True


def _meta(client: OpenSearch, index: str) -> dict[str, Any]:
    (body,) = client.indices.get_mapping(index=index).values()
    return dict(body["mappings"].get("_meta") or {})
