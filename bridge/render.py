"""How results are shown: hits as a table or JSON lines, metrics, status fields (pure functions)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bridge.search import Hit

LABEL_WIDTH = 80


def hits_table(hits: Sequence[Hit]) -> str:
    """Rank, id, score, and the title (or the start of the text), one line per hit."""
    if not hits:
        return "No hits."
    width = max(len("id"), *(len(hit.doc_id) for hit in hits))
    lines = [f"{'rank':>4}  {'id':<{width}}  {'score':>10}  title or text"]
    for rank, hit in enumerate(hits, 1):
        label = " ".join(str(hit.source.get("title") or hit.source.get("text") or "").split())
        if len(label) > LABEL_WIDTH:
            label = label[: LABEL_WIDTH - 1] + "…"
        lines.append(f"{rank:>4}  {hit.doc_id:<{width}}  {hit.score:>10.4f}  {label}")
    return "\n".join(lines)


def hits_json_lines(hits: Sequence[Hit]) -> Iterator[str]:
    """One JSON object per hit: rank, doc_id, score, the score's parts, source."""
    for rank, hit in enumerate(hits, 1):
        record = {
            "rank": rank,
            "doc_id": hit.doc_id,
            "score": hit.score,
            "bm25_score": hit.bm25_score,
            "similarity": hit.similarity,
            "source": hit.source,
        }
        yield json.dumps(record, ensure_ascii=False)


def display_name(measure: str) -> str:
    """A metric as the README's tables name it: `RR(rel=2)@10` -> `MRR@10`, `R@100` -> `R@100`
    (the relevance grade that counts is said once, beside the table)."""
    name = re.sub(r"\(rel=\d+\)", "", measure)
    return "MRR@10" if name == "RR@10" else name


def metrics_block(title: str, metrics: Mapping[str, float], notes: Sequence[str] = ()) -> str:
    """A title line, one indented `name value` line per metric (four decimals, the README's
    names), then any notes, indented."""
    lines = [f"  {display_name(name):<16} {value:.4f}" for name, value in metrics.items()]
    return "\n".join([title, *lines, *(f"  {note}" for note in notes)])


def fields(values: Mapping[str, object]) -> str:
    """One `name:  value` line per item, the values aligned (status commands)."""
    return "\n".join(f"{name + ':':<9} {value}" for name, value in values.items())
