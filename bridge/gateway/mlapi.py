"""The model API for clusters with ml-commons: endpoints in the shapes its HTTP connectors use.

- embedding (default embedding pre/post-processors): `{"input": ["text", ...]}` in, a bare
  JSON list of vectors out;
- rerank (the `rerank` response processor, `ml_opensearch`, default rerank pre/post-processors,
  `context.document_fields: ["doc_id"]`): `{"query": "...", "documents": ["<doc_id>", ...],
  "top_n": n}` in, `[{"index": i, "relevance_score": <float>}]` out, best first. The documents
  are scored by the exact similarity of their stored vectors, read with the caller's headers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from bridge.gateway.errors import BadRequest
from bridge.gateway.limits import Limits, check_texts
from bridge.gateway.models import IndexResolver, NotDotbridge, ServedModel
from bridge.gateway.rewrite import query_text
from bridge.gateway.upstream import Upstream
from bridge.search.bodies import ids_body
from bridge.search.scores import similarities

MAX_INPUTS = 10_000


async def embed(model: ServedModel, body: Any, limits: Limits | None = None) -> list[list[float]]:
    """Passage vectors of the texts in `input`, in order (each text read up to the model's
    window; the number of texts and characters within `limits`)."""
    texts = body.get("input") if isinstance(body, dict) else None
    if isinstance(texts, str):
        texts = [texts]
    if not (isinstance(texts, list) and texts and all(isinstance(t, str) for t in texts)):
        raise BadRequest('The embedding request needs "input": a list of texts.')
    check_texts(texts, limits or Limits())
    vectors = await model.passages(texts)
    return vectors.tolist()


def rerank_request(body: Any) -> tuple[str, list[str], int]:
    """(query, document ids, top_n) of a rerank request; BadRequest naming what is missing."""
    if not isinstance(body, dict):
        raise BadRequest('The rerank request must be a JSON object with "query" and "documents".')
    query = query_text(body.get("query"))
    documents = body.get("documents")
    if not (isinstance(documents, list) and all(isinstance(d, str | int) for d in documents)):
        raise BadRequest('The rerank request needs "documents": a list of document ids.')
    if len(documents) > MAX_INPUTS:
        raise BadRequest(f"At most {MAX_INPUTS} documents per rerank request.")
    top_n = body.get("top_n", len(documents))
    if isinstance(top_n, bool) or not isinstance(top_n, int) or top_n < 0:
        raise BadRequest("top_n must be a whole number of 0 or more.")
    return query, [str(d) for d in documents], top_n


async def rerank(
    upstream: Upstream,
    resolver: IndexResolver,
    index: str,
    raw_index: str,
    caller: Mapping[str, str],
    body: Any,
) -> list[dict[str, Any]]:
    """Each document's exact similarity to the query, best first, the top `top_n`."""
    query, doc_ids, top_n = rerank_request(body)
    info = await resolver.resolve(index, raw_index, caller)
    if isinstance(info, NotDotbridge):
        raise BadRequest(info.reason)
    if not doc_ids:
        return []
    spec = info.spec
    distinct = list(dict.fromkeys(doc_ids))
    vector = (await info.model.vectors([query]))[query]
    found = await upstream.call(
        "POST",
        f"/{raw_index}/_search",
        caller,
        ids_body(distinct, source=False, vector_field=spec.vector_field),
    )
    stored = {
        h["_id"]: h["_source"][spec.vector_field]
        for h in found["hits"]["hits"]
        if spec.vector_field in h.get("_source", {})
    }
    scores: dict[str, float] = {}
    if stored:
        ids = list(stored)
        values = similarities(vector, np.asarray([stored[i] for i in ids]), spec.similarity)
        scores = {doc_id: float(v) for doc_id, v in zip(ids, values, strict=True)}
    # A document that is not in the index ranks below every one that is.
    floor = (min(scores.values()) if scores else 0.0) - 1.0
    ranked = [
        {"index": i, "relevance_score": float(scores.get(doc_id, floor))}
        for i, doc_id in enumerate(doc_ids)
    ]
    ranked.sort(key=lambda item: (-item["relevance_score"], item["index"]))
    return ranked[:top_n]
