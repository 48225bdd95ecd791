"""What an index was built with (its `_meta`), and the check that an encoder fits it."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opensearchpy import OpenSearch
from opensearchpy.exceptions import NotFoundError

from bridge.errors import IndexMismatch
from mappings import VECTOR_FIELD, Similarity

if TYPE_CHECKING:
    from bridge.encoder import Encoder

META_KEY = "dotbridge"


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
    try:
        mapping = client.indices.get_mapping(index=index)
    except NotFoundError:
        return None
    (body,) = mapping.values()
    mappings = body.get("mappings", {})
    meta = mappings.get("_meta") or {}
    if META_KEY not in meta:
        raise IndexMismatch(
            f"Index {index!r} was not created by dotbridge (no _meta.{META_KEY}): "
            "choose another --index name or delete that index."
        )
    spec = IndexSpec.from_meta(meta)
    field = mappings.get("properties", {}).get(spec.vector_field, {})
    if field.get("dimension") != spec.dimension:
        raise IndexMismatch(
            f"Index {index!r} has a {spec.vector_field!r} field of dimension "
            f"{field.get('dimension')} but its _meta says {spec.dimension}: recreate the index."
        )
    return spec


def check_compatible(index: str, stored: IndexSpec, wanted: IndexSpec) -> None:
    """Raise IndexMismatch naming every setting in which the index and the encoder differ."""
    same_weights = stored.weights_sha256 is not None and (
        stored.weights_sha256 == wanted.weights_sha256
    )
    # The same weights under another path or id are the same model.
    # Runtime and dtype are recorded but not compared: they give the same vectors within
    # float tolerance; int8 quantization does not.
    fields = ("pooling", "normalize", "similarity", "dimension", "quantization")
    if not same_weights:
        fields = ("model", *fields)
    diffs = [
        f"{name} {getattr(stored, name)!s} (index) vs {getattr(wanted, name)!s} (encoder)"
        for name in fields
        if getattr(stored, name) != getattr(wanted, name)
    ]
    if diffs:
        advice = f"--model {stored.model} (with the same pooling/similarity)"
        if stored.quantization != wanted.quantization:
            runtime = " --runtime onnx" if stored.quantization != "none" else ""
            advice += f" and --quantize {stored.quantization}{runtime}"
        raise IndexMismatch(
            f"Index {index!r} was built with another model setting: {'; '.join(diffs)}. "
            f"Use {advice}, or another --index."
        )
