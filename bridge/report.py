"""The `eval-all` report: every mode on each collection, as the README's results table.

Fills a collection's index when it is missing or incomplete (through `ingest`), runs each mode
as planned for that collection, and renders the Markdown table between the README's markers.
Metrics and runs themselves live in `bridge.evaluate`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bridge.config import DEFAULT_COLLECTIONS, MINILM, MODES
from bridge.evaluate import Split, evaluate, load_split, measures_for, read_run, run_eval
from bridge.render import display_name
from bridge.search import make_searcher

if TYPE_CHECKING:
    from bridge.backends import Client
    from bridge.encoder import Encoder
    from ingest.ledger import IngestStats

log = logging.getLogger(__name__)

EVAL_START = "<!-- eval:start -->"
EVAL_END = "<!-- eval:end -->"


def markers(engine: str) -> tuple[str, str]:
    """The README markers of an engine's table: OpenSearch's `eval`, `eval-elasticsearch`."""
    if engine == "opensearch":
        return EVAL_START, EVAL_END
    return f"<!-- eval-{engine}:start -->", f"<!-- eval-{engine}:end -->"


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
    name = display_name(measure)
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


def update_readme(path: str | Path, block: str, engine: str = "opensearch") -> Path:
    """Write the block between the engine's markers (see `markers`)."""
    path = Path(path)
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    start, end = markers(engine)
    path.write_text(replace_between_markers(text, block, start=start, end=end), encoding="utf-8")
    return path


# ---- whole collections ---------------------------------------------------------------------


def corpus_size(path: str | Path) -> int:
    """Number of non-blank lines of a JSONL corpus."""
    with Path(path).open("rb") as f:
        return sum(1 for line in f if line.strip())


def ensure_ingested(
    client: Client,
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
    from ingest.pipeline import ingest_corpus

    expected = corpus_size(corpus)
    if client.indices.exists(index=index):
        client.indices.refresh(index=index)
        have = int(client.count(index=index)["count"])
        if have >= expected:
            log.info("%s already holds %d documents; not ingesting", index, have)
            return None
    stats = ingest_corpus(
        corpus,
        client=client,
        index=index,
        encoder=encoder,
        rejects=Path(rejects) if rejects is not None else None,
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
    rerank_run: Path | None = None  # re-rank this first-stage run instead of searching
    given_run: Path | None = None  # score this run file as it is, without searching
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
                plans.append(ModePlan("bm25", "given BM25 top-100 run", 100, given_run=split.run))
            else:
                plans.append(ModePlan("bm25", "BM25", 1000))
        elif mode == "rerank":
            if split.run is not None:
                plans.append(
                    ModePlan("rerank", "given BM25 top-100, re-ranked", 100, rerank_run=split.run)
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
    client: Client,
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
        measures = measures_for(plan.k, split.min_relevant_grade)
        tag = f"{tag_prefix}-{plan.mode}"
        out = Path(runs_dir) / f"{split.name}.{plan.mode}.trec" if runs_dir is not None else None
        if plan.given_run is not None:
            run = read_run(plan.given_run)
            metrics = evaluate(run, split.qrels, measures)
        else:
            searcher = make_searcher(
                plan.mode, client, index, encoder=encoder, source=False, **plan.options
            )
            candidates = read_run(plan.rerank_run) if plan.rerank_run is not None else None
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
    client: Client,
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


def eval_preamble(
    encoder: Encoder,
    engine: str,
    model_name: str = MINILM,
    analyzer: str = "english",
) -> str:
    """The lines above the table: what was measured, with which settings, and how.

    `engine` names the cluster (`OpenSearch 3.5.0`), `analyzer` the text fields' analyzer.
    """
    return (
        f"`{model_name}` ({encoder.pooling} pooling, "
        f"{'L2-normalised, ' if encoder.normalize else ''}{encoder.similarity.value}, "
        f"passages cut at {encoder.passage_max_length} tokens) on {engine}, "
        "one shard, Lucene HNSW (m=16, ef_construction=128); BM25 is a `multi_match` over title "
        f"and text with the {analyzer} analyzer. Metrics by ir_measures over the judged test "
        "queries "
        "(a query without hits counts 0); nDCG@10 uses the graded judgments, MRR@10 and recall "
        "count grade >= 1 (BEIR) or >= 2 (TREC DL, as trec_eval -l 2). "
        "A dash: the run is not that deep."
    )


def eval_all(
    client: Client,
    encoder: Encoder,
    *,
    datasets: Path | None = None,
    collections: Sequence[str] = DEFAULT_COLLECTIONS,
    modes: Sequence[str] = MODES,
    runs_dir: Path | None = None,
    readme: Path | None = None,
    progress: bool | None = None,
) -> str:
    """What `dotbridge eval-all` does: the results block, written into `readme` when given."""
    from bridge.datasets import locate
    from bridge.errors import BadInput

    if datasets is None:  # each collection found the documented way
        dirs = [locate(name) for name in collections]
    else:
        dirs = [datasets / name for name in collections]
    if missing := [str(d) for d in dirs if not d.is_dir()]:
        raise BadInput(f"No collection at {', '.join(missing)}: check --datasets/--collections.")
    rows = evaluate_collections(
        dirs, client=client, encoder=encoder, modes=modes, runs_dir=runs_dir, progress=progress
    )
    from bridge.backends import backend_of

    backend = backend_of(client)
    command = "dotbridge eval-all" + (f" --readme {readme}" if readme is not None else "")
    start = f"dotbridge {backend.name} start"
    if backend.name == "elasticsearch":  # its local node listens beside OpenSearch's
        command += " --url http://127.0.0.1:9201"
    if tuple(collections) != DEFAULT_COLLECTIONS:
        command += f" --collections {','.join(collections)}"
    if datasets is not None:
        command += f" --datasets {datasets}"
    analyzers = {index_analyzer(client, index_name(Path(d).resolve().name)) for d in dirs}
    block = render_table(
        rows,
        preamble=eval_preamble(
            encoder,
            f"{backend.product} {backend.version(client)}",
            analyzer=" / ".join(sorted(a for a in analyzers if a)) or "default",
        ),
        commands=["make install", start, command],
    )
    if readme is not None:
        update_readme(readme, block, backend.name)
    return block


def index_analyzer(client: Client, index: str) -> str | None:
    """The analyzer of an index's `text` field (None when the mapping names none)."""
    (body,) = client.indices.get_mapping(index=index).values()
    return body["mappings"].get("properties", {}).get("text", {}).get("analyzer")
