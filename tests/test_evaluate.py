"""Evaluation: qrels/queries/run files, metrics through ir_measures, runs from a real node."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from bridge import evaluate as ev
from bridge.errors import BadInput
from bridge.search import Hit, make_searcher
from tests.ingest_helpers import datasets_dir

DATASETS = datasets_dir()
SCIFACT = DATASETS / "scifact"


def hit(doc_id: str, score: float) -> Hit:
    return Hit(doc_id, score, {})


# ---- qrels and queries -------------------------------------------------------------------------


def test_qrels_with_crlf_and_header(tmp_path: Path) -> None:
    path = tmp_path / "test.tsv"
    path.write_bytes(b"query-id\tcorpus-id\tscore\r\n1\td1\t1\r\n1\td2\t0\r\n\r\n2\td3\t2\r\n")
    assert ev.load_qrels(path) == {"1": {"d1": 1, "d2": 0}, "2": {"d3": 2}}


def test_qrels_without_header_and_in_trec_format(tmp_path: Path) -> None:
    beir = tmp_path / "beir.tsv"
    beir.write_text("q1\td1\t3\n")
    trec = tmp_path / "trec.txt"
    trec.write_text("q1 0 d1 3\n")
    assert ev.load_qrels(beir) == ev.load_qrels(trec) == {"q1": {"d1": 3}}


def test_bad_grade_after_the_first_line_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "test.tsv"
    path.write_text("q1\td1\t1\nq1\td2\thigh\n")
    with pytest.raises(BadInput, match=":2: relevance 'high'"):
        ev.load_qrels(path)


def test_queries_restricted_to_judged_ones(tmp_path: Path) -> None:
    path = tmp_path / "queries.jsonl"
    lines = [{"_id": "1", "text": "one"}, {"_id": "2", "text": "two"}, {"_id": 3, "text": "x"}]
    path.write_text("\n".join(json.dumps(q) for q in lines) + "\n")
    assert ev.load_queries(path, only={"3", "1"}) == {"1": "one", "3": "x"}
    with pytest.raises(BadInput, match="1 judged queries"):
        ev.load_queries(path, only={"1", "9"})


def test_scifact_test_split() -> None:
    split = ev.load_split(SCIFACT)
    assert split.name == "scifact"
    assert len(split.queries) == 300
    assert sum(len(docs) for docs in split.qrels.values()) == 339
    assert split.run is None and split.min_relevant_grade == 1
    assert ev.min_relevant_grade("trec-dl-2019-passage-subset") == 2


# ---- runs ---------------------------------------------------------------------------------------


def test_trec_run_round_trip(tmp_path: Path) -> None:
    run = {"q2": {"b": 3.25, "a": 1 / 3, "c": -0.5}, "q1": {"z": 10.0}}
    path = ev.write_run(run, tmp_path / "sub" / "run.trec", tag="mine")
    lines = path.read_text().splitlines()
    assert lines[0] == "q2 Q0 b 1 3.25 mine"
    assert [line.split()[3] for line in lines] == ["1", "2", "3", "1"]
    back = ev.read_run(path)
    assert back == run
    assert [list(docs) for docs in back.values()] == [["b", "a", "c"], ["z"]]  # rank order kept


def test_read_run_needs_six_fields(tmp_path: Path) -> None:
    path = tmp_path / "run.trec"
    path.write_text("q Q0 b 2 5.0 t\nq Q0 a 1 6.0 t\n")
    assert list(ev.read_run(path)["q"]) == ["a", "b"]
    path.write_text("q Q0 a 1 6.0\n")
    with pytest.raises(BadInput, match="6 fields"):
        ev.read_run(path)


def test_run_tag_must_be_one_word(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="one word"):
        ev.write_run({}, tmp_path / "r.trec", tag="two words")


# ---- metrics -------------------------------------------------------------------------------------


def test_metrics_match_their_definitions() -> None:
    """nDCG with linear gains (trec_eval's), RR of the first relevant, recall; a judged query
    without hits counts 0."""
    qrels = {"q1": {"a": 3, "b": 1, "c": 0, "d": 2}, "q2": {"e": 1}}
    ranking = ["c", "a", "x", "b"]  # d, also relevant, is not retrieved
    run = {"q1": {doc: 10.0 - i for i, doc in enumerate(ranking)}}

    def dcg(gains: list[int]) -> float:
        return sum(g / math.log2(i + 2) for i, g in enumerate(gains))

    grades = qrels["q1"]
    q1_ndcg = dcg([grades.get(d, 0) for d in ranking]) / dcg(sorted(grades.values(), reverse=True))
    q1_rr = 1 / 2  # a, at rank 2, is the first with grade >= 1
    q1_rr_rel2 = 1 / 2  # ... and with grade >= 2
    q1_recall = 2 / 3  # a and b of the relevant a, b, d
    q1_recall_rel2 = 1 / 2  # a of a, d

    metrics = ev.evaluate(run, qrels, ev.measures_for(100))
    assert set(metrics) == {"nDCG@10", "RR@10", "R@100"}
    assert metrics["nDCG@10"] == pytest.approx(q1_ndcg / 2)
    assert metrics["RR@10"] == pytest.approx(q1_rr / 2)
    assert metrics["R@100"] == pytest.approx(q1_recall / 2)

    graded = ev.evaluate(run, qrels, ev.measures_for(1000, min_relevant_grade=2))
    assert set(graded) == {"nDCG@10", "RR(rel=2)@10", "R(rel=2)@100", "R(rel=2)@1000"}
    assert graded["nDCG@10"] == pytest.approx(q1_ndcg / 2)
    # q2 has no document of grade >= 2: it still counts, as 0.
    assert graded["RR(rel=2)@10"] == pytest.approx(q1_rr_rel2 / 2)
    assert graded["R(rel=2)@100"] == pytest.approx(q1_recall_rel2 / 2)


def test_unjudged_queries_of_the_run_are_ignored() -> None:
    qrels = {"q1": {"a": 1}}
    run = {"q1": {"a": 1.0}, "other": {"b": 1.0}}
    assert ev.evaluate(run, qrels, ["nDCG@10", "RR@10"]) == {"nDCG@10": 1.0, "RR@10": 1.0}


def test_measures_follow_the_depth() -> None:
    assert [str(m) for m in ev.measures_for(10)] == ["nDCG@10", "RR@10"]
    assert [str(m) for m in ev.measures_for(100, min_relevant_grade=2)] == [
        "nDCG@10",
        "RR(rel=2)@10",
        "R(rel=2)@100",
    ]


# ---- run_eval ------------------------------------------------------------------------------------


class FakeSearcher:
    """Returns the query's own id first, then d0, d1, ...; records how it was called."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int, int]] = []

    def search_many(self, queries: list[str], k: int = 10) -> list[list[Hit]]:
        self.calls.append(("search", len(queries), k))
        return [[hit(q, 99.0)] + [hit(f"d{i}", 10.0 - i) for i in range(k - 1)] for q in queries]

    def rerank_many(self, queries, candidate_lists, k=10) -> list[list[Hit]]:
        self.calls.append(("rerank", len(queries), k))
        return [[hit(d, float(i)) for i, d in enumerate(ids)][:k] for ids in candidate_lists]


def test_drop_self_removes_the_query_itself_and_keeps_k(tmp_path: Path) -> None:
    searcher = FakeSearcher()
    queries = {"q1": "q1", "q2": "q2", "q3": "q3"}  # the fake echoes the text as an id
    qrels = {"q1": {"q1": 1, "d0": 1}, "q2": {"d5": 1}, "q3": {"q3": 1}}
    result = ev.run_eval(searcher, queries, qrels, k=5, drop_self=True, batch_size=2)
    assert searcher.calls == [("search", 2, 6), ("search", 1, 6)]
    assert all(len(docs) == 5 and qid not in docs for qid, docs in result.run.items())
    assert result.metrics["RR@10"] == pytest.approx((1 + 0 + 0) / 3)

    kept = ev.run_eval(FakeSearcher(), queries, qrels, k=5)
    assert all(list(docs)[0] == qid for qid, docs in kept.run.items())
    assert kept.metrics["RR@10"] == pytest.approx((1 + 0 + 1) / 3)


def test_candidates_are_reranked_and_the_run_written(tmp_path: Path) -> None:
    searcher = FakeSearcher()
    candidates = {"q1": {"a": 3.0, "b": 2.0, "c": 1.0}}
    out = tmp_path / "run.trec"
    result = ev.run_eval(
        searcher,
        {"q1": "text", "q2": "other"},
        {"q1": {"c": 1}, "q2": {"x": 1}},
        k=2,
        candidates=candidates,
        out=out,
        tag="t",
    )
    assert searcher.calls == [("rerank", 2, 2)]
    assert result.run == {"q1": {"a": 0.0, "b": 1.0}, "q2": {}}
    assert ev.read_run(out) == {"q1": {"a": 0.0, "b": 1.0}}
    assert result.metrics["nDCG@10"] == 0.0


def test_candidates_need_a_reranker() -> None:
    class Plain:
        def search_many(self, queries, k=10):
            return [[] for _ in queries]

    with pytest.raises(BadInput, match="--mode rerank"):
        ev.run_eval(Plain(), {"q": "t"}, {"q": {"d": 1}}, candidates={"q": {"d": 1.0}})


# ---- on a real node ---------------------------------------------------------------------------


@pytest.mark.integration
def test_bm25_run_eval_on_a_scifact_slice(os_client, index_name, tiny_encoder, tmp_path) -> None:
    from ingest.pipeline import ingest_corpus
    from ingest.readers import read_records

    stats = ingest_corpus(
        SCIFACT / "corpus.jsonl",
        client=os_client,
        index=index_name,
        encoder=tiny_encoder,
        limit=200,
        rejects=tmp_path / "rejects.jsonl",
        progress=False,
    )
    assert stats.indexed == 200
    indexed = {r.doc_id for r in read_records(SCIFACT / "corpus.jsonl", limit=200)}
    split = ev.load_split(SCIFACT)
    qrels = {q: docs for q, docs in split.qrels.items() if indexed & docs.keys()}
    queries = {q: split.queries[q] for q in qrels}
    assert len(queries) >= 5

    out = tmp_path / "bm25.trec"
    searcher = make_searcher("bm25", os_client, index_name)
    result = ev.run_eval(searcher, queries, qrels, k=100, out=out, tag="bm25")

    lines = out.read_text().splitlines()
    assert lines and all(len(line.split()) == 6 for line in lines)
    for qid, docs in ev.read_run(out).items():
        assert qid in queries and set(docs) <= indexed
        scores = list(docs.values())
        assert scores == sorted(scores, reverse=True)
    assert ev.read_run(out) == {q: d for q, d in result.run.items() if d}
    assert set(result.metrics) == {"nDCG@10", "RR@10", "R@100"}
    assert all(0.0 <= v <= 1.0 for v in result.metrics.values())
    assert result.metrics["nDCG@10"] > 0


def test_every_measure_scores_a_tied_run_in_the_order_given() -> None:
    # pytrec_eval (nDCG) and ir_measures' msmarco provider (RR) break equal scores in opposite
    # orders; the run must be scored as `search` returned it: here "a" at rank 2.
    qrels = {"q": {"a": 1}}
    run = {"q": {"b": 1.0, "a": 1.0, "c": 1.0}}
    metrics = ev.evaluate(run, qrels, ["nDCG@10", "RR@10", "P@1", "P@2"])
    assert metrics["RR@10"] == pytest.approx(0.5)
    assert metrics["nDCG@10"] == pytest.approx(1 / math.log2(3))
    assert (metrics["P@1"], metrics["P@2"]) == (0.0, 0.5)


def test_run_files_are_read_in_trec_eval_order(tmp_path: Path) -> None:
    path = tmp_path / "run.trec"
    # The rank column disagrees with the scores; trec_eval ignores it, and so do we.
    path.write_text("q Q0 a 1 1.0 t\nq Q0 b 2 3.0 t\nq Q0 d 3 1.0 t\nq Q0 c 4 2.0 t\n")
    assert list(ev.read_run(path)["q"]) == ["b", "c", "d", "a"]


def test_recall_is_measured_only_as_deep_as_the_run_goes() -> None:
    """A run that stops at 150 hits (rerank of the BM25 top 150) reports R@100 but not R@1000,
    which would only repeat the recall of its 150; a 1000-deep run reports both."""

    class Capped(FakeSearcher):
        def __init__(self, cap: int) -> None:
            super().__init__()
            self.cap = cap

        def search_many(self, queries, k=10):
            return [hits[: self.cap] for hits in super().search_many(queries, k)]

    qrels = {"q1": {"d3": 1}}
    shallow = ev.run_eval(Capped(150), {"q1": "q1"}, qrels, k=1000)
    assert list(shallow.metrics) == ["nDCG@10", "RR@10", "R@100"]
    deep = ev.run_eval(Capped(1000), {"q1": "q1"}, qrels, k=1000)
    assert list(deep.metrics) == ["nDCG@10", "RR@10", "R@100", "R@1000"]
