"""Index bodies built by pure functions; imports nothing else of dotbridge."""

from __future__ import annotations

from enum import Enum


class Similarity(str, Enum):
    """How relevance is scored; one value drives the mapping, the query and the score conversion."""

    DOT = "dot"
    COSINE = "cosine"

    def __str__(self) -> str:
        return self.value

    @property
    def space_type(self) -> str:
        return {"dot": "innerproduct", "cosine": "cosinesimil"}[self.value]

    @classmethod
    def parse(cls, value: str | Similarity) -> Similarity:
        try:
            return cls(value)
        except ValueError:
            valid = ", ".join(s.value for s in cls)
            raise ValueError(f"unknown similarity {value!r}; choose one of: {valid}") from None


ENGINES = ("lucene", "faiss")
ANALYZERS = ("english", "standard", "simple", "whitespace")
VECTOR_FIELD = "vector"
TEXT_FIELDS = ("title", "text")
# Where a document's input line and content digest are kept (stored, never indexed): a later
# run tells "already indexed from this line" from "another record with the same id".
ORIGIN_FIELD = "ingest"


def index_body(
    *,
    dimension: int,
    similarity: str | Similarity,
    meta: dict,
    engine: str = "lucene",
    analyzer: str = "english",
    m: int = 16,
    ef_construction: int = 128,
    shards: int = 1,
    replicas: int = 0,
    compression: str = "none",
) -> dict:
    """Settings and mappings of a dotbridge index: BM25 text fields plus one HNSW vector field.

    `compression="4x"` has the lucene engine keep 7-bit scalar-quantised copies (`encoder: sq`)
    for the graph search beside the float32 vectors; no other level or engine is built here.

    `meta` lands in the mapping's `_meta` so that any reader (the bridge, Dashboards users) can
    tell which model filled the index.
    """
    sim = Similarity.parse(similarity)
    _choose("engine", engine, ENGINES)
    _choose("analyzer", analyzer, ANALYZERS)
    if dimension < 1:
        raise ValueError(f"dimension must be positive, got {dimension}")
    for name, value in (("m", m), ("ef_construction", ef_construction), ("shards", shards)):
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
    if replicas < 0:
        raise ValueError(f"replicas must be 0 or more, got {replicas}")
    parameters: dict = {"m": m, "ef_construction": ef_construction}
    if compression == "4x" and engine == "lucene":
        parameters["encoder"] = {"name": "sq"}
    elif compression != "none":
        raise ValueError(f"compression {compression!r} is not built by the {engine} engine")
    text = {"type": "text", "analyzer": analyzer}
    return {
        "settings": {
            "index": {
                "knn": True,
                "number_of_shards": shards,
                "number_of_replicas": replicas,
            }
        },
        "mappings": {
            "_meta": meta,
            "dynamic": False,
            "properties": {
                "doc_id": {"type": "keyword"},
                "title": text,
                "text": text,
                ORIGIN_FIELD: {"type": "object", "enabled": False},
                VECTOR_FIELD: {
                    "type": "knn_vector",
                    "dimension": dimension,
                    "space_type": sim.space_type,
                    "method": {
                        "name": "hnsw",
                        "engine": engine,
                        "parameters": parameters,
                    },
                },
            },
        },
    }


def _choose(name: str, value: str, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise ValueError(f"unknown {name} {value!r}; choose one of: {', '.join(valid)}")
