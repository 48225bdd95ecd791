"""Relevance evaluation: BEIR queries and qrels in, TREC runs in and out, metrics by ir_measures.

Metrics are never computed here: `evaluate` hands the run and the judgments to ir_measures
(pytrec_eval underneath, i.e. trec_eval's definitions). A query with judgments but no hits
counts as 0, as with `trec_eval -c`, so dropping hits can never flatter a score.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ir_measures
from ir_measures import Measure
from tqdm import tqdm

from bridge.config import MAX_RESULTS
from bridge.errors import BadInput

if TYPE_CHECKING:
    from bridge.backends import Client
    from bridge.config import ModelSettings

log = logging.getLogger(__name__)

Qrels = dict[str, dict[str, int]]
"""query id -> document id -> relevance grade."""

Run = dict[str, dict[str, float]]
"""query id -> document id -> score, each query's documents in rank order."""


# ---- queries and judgments ---------------------------------------------------------------------


def load_qrels(path: str | Path) -> Qrels:
    """Read a BEIR qrels TSV (query-id, corpus-id, score), with or without its header line.

    Line endings may be LF or CRLF (BEIR ships CRLF). A repeated pair keeps the last grade.
    """
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"No qrels file at {str(path)!r}: give a BEIR dataset directory.")
    qrels: Qrels = {}
    with path.open(encoding="utf-8") as f:  # universal newlines: CRLF reads as LF
        for line_no, line in enumerate(f, 1):
            row = line.split("\t") if "\t" in line else line.split()
            row = [cell.strip() for cell in row]
            if not any(row):
                continue
            if len(row) == 3:  # BEIR: query-id corpus-id score
                qid, docid, grade = row
            elif len(row) == 4:  # TREC: qid iteration docid relevance
                qid, _, docid, grade = row
            else:
                raise BadInput(f"{path}:{line_no}: expected query-id, corpus-id, score.")
            try:
                value = int(grade)
            except ValueError:
                if line_no == 1:  # the header line
                    continue
                raise BadInput(
                    f"{path}:{line_no}: relevance {grade!r} is not an integer."
                ) from None
            qrels.setdefault(qid, {})[docid] = value
    if not qrels:
        raise BadInput(f"{path} holds no judgments.")
    return qrels


def load_queries(path: str | Path, only: Iterable[str] | None = None) -> dict[str, str]:
    """Read BEIR queries.jsonl as id -> text; with `only`, just those ids (all must be there)."""
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"No queries file at {str(path)!r}: give a BEIR dataset directory.")
    wanted = set(only) if only is not None else None
    queries: dict[str, str] = {}
    with path.open(encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            obj = json.loads(line)
            qid = str(obj["_id"])
            if wanted is None or qid in wanted:
                queries[qid] = obj["text"]
    if wanted is not None and (missing := wanted - queries.keys()):
        example = sorted(missing)[0]
        raise BadInput(
            f"{len(missing)} judged queries (e.g. {example!r}) are missing from {path}: "
            "the qrels and queries do not belong together."
        )
    return queries


@dataclass(frozen=True)
class Split:
    """The judged queries of one split of a BEIR-format collection, with their qrels."""

    name: str
    queries: dict[str, str]
    qrels: Qrels
    corpus: Path
    run: Path | None  # a first-stage run shipped with the collection, when there is one

    @property
    def min_relevant_grade(self) -> int:
        """The lowest grade that counts as relevant for binary measures (RR, recall)."""
        return min_relevant_grade(self.name)


def load_split(dataset_dir: str | Path, split: str = "test") -> Split:
    """Queries restricted to those judged in `qrels/<split>.tsv`, in the order of queries.jsonl."""
    root = Path(dataset_dir)
    if not root.is_dir():
        raise BadInput(f"{str(root)!r} is not a directory: give a BEIR dataset directory.")
    qrels = load_qrels(root / "qrels" / f"{split}.tsv")
    queries = load_queries(root / "queries.jsonl", only=qrels)
    run = root / "runs" / "bm25_top100.trec"
    return Split(
        name=root.resolve().name,
        queries=queries,
        qrels=qrels,
        corpus=root / "corpus.jsonl",
        run=run if run.is_file() else None,
    )


def min_relevant_grade(collection: str) -> int:
    """The grade from which a document counts as relevant for binary measures (RR, R).

    TREC Deep Learning counts grade >= 2 (trec_eval -l 2); BEIR counts any grade >= 1.
    """
    return 2 if collection.lower().startswith(("trec-dl", "dl19", "dl20", "msmarco")) else 1


# ---- runs ---------------------------------------------------------------------------------------


def read_run(path: str | Path) -> Run:
    """Read a TREC run (`qid Q0 docid rank score tag`); each query's documents in the order
    trec_eval reads them: by score, ties by doc id descending (the rank column is ignored)."""
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"No run file at {str(path)!r}.")
    rows: dict[str, list[tuple[str, float]]] = {}
    with path.open(encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 6:
                raise BadInput(
                    f"{path}:{line_no}: a TREC run line has 6 fields "
                    f"(qid Q0 docid rank score tag), found {len(parts)}."
                )
            qid, _, docid, rank, score, _tag = parts
            try:
                int(rank)  # checked, then ignored as trec_eval ignores it
                rows.setdefault(qid, []).append((docid, float(score)))
            except ValueError:
                raise BadInput(f"{path}:{line_no}: rank or score is not a number.") from None
    run: Run = {}
    for qid, entries in rows.items():
        run[qid] = dict(trec_order(entries))
    return run


def trec_order(scored: Iterable[tuple[str, float]]) -> list[tuple[str, float]]:
    """Best first, equal scores by doc id descending: trec_eval's order, and dotbridge's."""
    return sorted(scored, key=lambda item: (item[1], item[0]), reverse=True)


def write_run(run: Mapping[str, Mapping[str, float]], path: str | Path, tag: str) -> Path:
    """Write `run` in TREC format, ranks 1.. in each query's given order."""
    if not tag or any(c.isspace() for c in tag):
        raise ValueError(f"run tag must be one word, got {tag!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for qid, docs in run.items():
            for rank, (docid, score) in enumerate(docs.items(), 1):
                f.write(f"{qid} Q0 {docid} {rank} {score!r} {tag}\n")
    return path


def hits_to_run(
    qids: Sequence[str], results: Sequence[Sequence[Any]], *, drop_self: bool = False, k: int
) -> Run:
    """Turn searcher results (lists of Hit) into a run of at most k documents per query.

    With drop_self, a hit whose id equals the query id is left out: BEIR does so for collections
    such as ArguAna, where every query is itself a document of the corpus.
    """
    run: Run = {}
    for qid, hits in zip(qids, results, strict=True):
        docs: dict[str, float] = {}
        for hit in hits:
            if drop_self and hit.doc_id == qid:
                continue
            docs.setdefault(hit.doc_id, float(hit.score))
            if len(docs) == k:
                break
        run[qid] = docs
    return run


# ---- metrics -----------------------------------------------------------------------------------


def measures_for(depth: int, min_relevant_grade: int = 1) -> list[Measure]:
    """nDCG@10 (graded), RR@10, and recall at 100 and 1000 where the run is that deep.

    Binary measures count grades >= min_relevant_grade; nDCG always uses the grades themselves.
    """
    binary = {"rel": min_relevant_grade} if min_relevant_grade > 1 else {}
    chosen = [ir_measures.nDCG @ 10, ir_measures.RR(**binary) @ 10]
    chosen += [ir_measures.R(**binary) @ cut for cut in (100, 1000) if depth >= cut]
    return chosen


def evaluate(
    run: Mapping[str, Mapping[str, float]],
    qrels: Mapping[str, Mapping[str, int]],
    measures: Iterable[Measure | str],
) -> dict[str, float]:
    """Mean of each measure over the judged queries, by ir_measures; keys are measure names.

    Each query's documents are scored in the order given. ir_measures' providers break equal
    scores differently (pytrec_eval by doc id descending, its msmarco provider ascending), so
    the run is handed over with strictly decreasing scores in that order: every measure sees
    the ranking `search` returned. Queries of the run without judgments are ignored; judged
    queries without hits count as 0.
    """
    parsed = [ir_measures.parse_measure(m) if isinstance(m, str) else m for m in measures]
    judged = {qid: dict(docs) for qid, docs in qrels.items()}
    scored = {
        qid: {doc_id: float(len(docs) - rank) for rank, doc_id in enumerate(docs)}
        for qid, docs in run.items()
        if qid in judged
    }
    result = ir_measures.calc_aggregate(parsed, judged, scored)
    return {str(m): float(result[m]) for m in parsed}


@dataclass
class EvalResult:
    metrics: dict[str, float]
    run: Run
    queries: int
    seconds: float
    run_path: Path | None = None


def run_eval(
    searcher: Any,
    queries: Mapping[str, str],
    qrels: Qrels,
    *,
    k: int = 1000,
    candidates: Mapping[str, Mapping[str, float]] | None = None,
    drop_self: bool = False,
    measures: Iterable[Measure | str] | None = None,
    min_relevant_grade: int = 1,
    out: str | Path | None = None,
    tag: str = "dotbridge",
    batch_size: int = 32,
    progress: bool | None = None,
) -> EvalResult:
    """Search every query (batched with `search_many`), write the run, return the metrics.

    With `candidates` (a first-stage run), the searcher re-ranks each query's given documents
    with `rerank_many` instead of searching; queries without candidates get no hits.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if candidates is not None and not hasattr(searcher, "rerank_many"):
        raise BadInput("A candidate run was given, but only --mode rerank can re-rank one.")
    qids = list(queries)
    # One more hit per query so that dropping the query's own document still leaves k.
    depth = min(k + 1, MAX_RESULTS) if drop_self else k
    results: list[Sequence[Any]] = []
    started = time.perf_counter()
    with tqdm(
        total=len(qids),
        unit="query",
        desc="search",
        disable=None if progress is None else not progress,
    ) as bar:
        for chunk in _chunks(qids, batch_size):
            texts = [queries[q] for q in chunk]
            if candidates is None:
                results.extend(searcher.search_many(texts, k=depth))
            else:
                lists = [list(candidates.get(q, {})) for q in chunk]
                results.extend(searcher.rerank_many(texts, lists, k=depth))
            bar.update(len(chunk))
    seconds = time.perf_counter() - started
    run = hits_to_run(qids, results, drop_self=drop_self, k=k)
    run_path = write_run(run, out, tag) if out is not None else None
    if measures is None:  # recall only at depths the run reaches (rerank stops at --candidates)
        measures = measures_for(run_depth(run), min_relevant_grade)
    return EvalResult(evaluate(run, qrels, measures), run, len(qids), seconds, run_path)


def run_depth(run: Mapping[str, Mapping[str, float]]) -> int:
    """How deep the run goes: the most documents any query got."""
    return max((len(docs) for docs in run.values()), default=0)


def missing_judged(client: Client, index: str, qrels: Qrels, *, chunk: int = 5000) -> int:
    """How many of the judged documents are not in `index` (an index that holds only part of
    the collection scores lower for it, and the eval says so)."""
    judged = sorted({doc for docs in qrels.values() for doc in docs})
    present = 0
    for start in range(0, len(judged), chunk):
        ids = judged[start : start + chunk]
        answer = client.count(index=index, body={"query": {"ids": {"values": ids}}})
        present += int(answer["count"])
    return len(judged) - present


def _chunks(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@dataclass(frozen=True)
class DatasetEval:
    """One `dotbridge eval`: the split, its metrics, and the judged documents not in the index
    (None when a given run was scored without an index)."""

    split: Split
    metrics: dict[str, float]
    missing_judged: int | None

    @property
    def judged(self) -> int:
        return len({doc for docs in self.split.qrels.values() for doc in docs})

    def notes(self) -> list[str]:
        notes = []
        if self.split.min_relevant_grade > 1:
            notes.append(f"(MRR and recall count grade >= {self.split.min_relevant_grade})")
        if self.missing_judged:
            notes.append(
                f"{self.missing_judged:,} of the {self.judged:,} judged documents are not in "
                "the index: the metrics count them as never found."
            )
        return notes


def scores_run_as_is(mode: str, run_file: str | Path | None) -> bool:
    """Whether `evaluate_dataset` scores `run_file` as it is (bm25 mode) instead of searching,
    so that no run of its own is written."""
    return run_file is not None and mode == "bm25"


def evaluate_dataset(
    dataset_dir: str | Path,
    *,
    mode: str,
    connect: Callable[[], Client],
    model: ModelSettings,
    index: str | None = None,
    run_file: str | Path | None = None,
    k: int = 1000,
    out: str | Path | None = None,
    drop_self: bool = False,
    split: str = "test",
    search_options: Mapping[str, Any] | None = None,
    progress: bool | None = None,
) -> DatasetEval:
    """What `dotbridge eval` does: search (or re-rank `run_file`, or score it as it is in bm25
    mode) the judged queries of one split; returns the split, its metrics and how many judged
    documents the index lacks.

    The cluster is reached through `connect` and the model loaded only when the mode needs
    them; without `model.model`, the model the index recorded is used.
    """
    from bridge.datasets import resolve

    data = load_split(resolve(dataset_dir), split)
    if scores_run_as_is(mode, run_file):
        run = read_run(run_file)
        measures = measures_for(run_depth(run), data.min_relevant_grade)
        return DatasetEval(data, evaluate(run, data.qrels, measures), None)
    if run_file is not None and mode != "rerank":
        raise BadInput(f"--run goes with --mode rerank or bm25, not {mode}.")
    if index is None:
        raise BadInput(f"--mode {mode} searches an index: give its name with --index.")
    from bridge.search import open_searcher

    client = connect()
    # Runs need ids and scores only: leave the documents on the server.
    searcher = open_searcher(client, index, mode, model, source=False, **(search_options or {}))
    result = run_eval(
        searcher,
        data.queries,
        data.qrels,
        k=k,
        candidates=read_run(run_file) if run_file is not None else None,
        drop_self=drop_self,
        min_relevant_grade=data.min_relevant_grade,
        out=out,
        tag=f"dotbridge-{mode}",
        progress=progress,
    )
    return DatasetEval(data, result.metrics, missing_judged(client, index, data.qrels))
