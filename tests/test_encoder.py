"""Unit tests of bridge.encoder: tokenisation, pooling, batching, loading errors (no server)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transformers import AutoModel, AutoTokenizer

from bridge.encoder import SEED_MODEL, Encoder, ModelLoadError
from mappings import Similarity

SEED_QUERY = "what is the transformers library"
SEED_RELEVANT = (
    "We are very happy to show you the 🤗 Transformers library for pre-trained language models. "
    "We are helping the community work together towards the goal of advancing NLP 🔥."
)
SEED_OTHER = (
    "Hmm I don't like this new movie about transformers that i got from my local library. "
    "Those transformers are robots?"
)
# fmt: off
GOLDEN_IDS = {
    SEED_QUERY: [101, 2054, 2003, 1996, 19081, 3075, 102],
    SEED_RELEVANT: [
        101, 2057, 2024, 2200, 3407, 2000, 2265, 2017, 1996, 100, 19081, 3075, 2005, 3653, 1011,
        4738, 2653, 4275, 1012, 2057, 2024, 5094, 1996, 2451, 2147, 2362, 2875, 1996, 3125, 1997,
        10787, 17953, 2361, 100, 1012, 102,
    ],
    SEED_OTHER: [
        101, 17012, 1045, 2123, 1005, 1056, 2066, 2023, 2047, 3185, 2055, 19081, 2008, 1045, 2288,
        2013, 2026, 2334, 3075, 1012, 2216, 19081, 2024, 13507, 1029, 102,
    ],
}
# fmt: on
# Scores of the real seed checkpoint (CLS vector, raw dot product) for the seed query.
SEED_SCORES = (108.82856750488281, 99.5865249633789)

MIXED_TEXTS = [
    "short",
    "a somewhat longer sentence about dense retrieval with a bi-encoder before a search engine",
    "",
    "word " * 700,  # longer than the 512-token limit
    SEED_RELEVANT,
    "x",
    SEED_OTHER,
    "the " * 40,
]


def seed_style_cls(model_dir: Path, texts: list[str]) -> np.ndarray:
    """The seed model card's recipe: pad the batch, take the CLS row of the last hidden state."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir).eval()
    inputs = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        return model(**inputs)[0][:, 0, :].numpy()


def masked_mean(model_dir: Path, texts: list[str], max_length: int) -> np.ndarray:
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir).eval()
    inputs = tokenizer(
        texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt"
    )
    with torch.no_grad():
        hidden = model(**inputs)[0]
    mask = inputs["attention_mask"].unsqueeze(-1).float()
    return ((hidden * mask).sum(1) / mask.sum(1)).numpy()


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


# --- tokenisation ---------------------------------------------------------------------------


@pytest.mark.parametrize("text", list(GOLDEN_IDS))
def test_golden_token_ids_direct(minilm_dir: Path, text: str) -> None:
    tokenizer = AutoTokenizer.from_pretrained(minilm_dir)
    assert tokenizer(text)["input_ids"] == GOLDEN_IDS[text]


@pytest.mark.parametrize("text", list(GOLDEN_IDS))
def test_golden_token_ids_through_encoder(tiny_encoder: Encoder, text: str) -> None:
    assert tiny_encoder.tokenizer(text)["input_ids"] == GOLDEN_IDS[text]


def test_model_sees_golden_ids_in_input_order(tiny_encoder: Encoder) -> None:
    seen: list[torch.Tensor] = []

    def capture(module, args, kwargs):
        seen.append(kwargs["input_ids"].clone())

    handle = tiny_encoder.model.register_forward_pre_hook(capture, with_kwargs=True)
    try:
        tiny_encoder.encode_passages(list(GOLDEN_IDS), batch_size=8)
    finally:
        handle.remove()
    (batch,) = seen
    # Sorted longest first, right padded.
    expected = sorted(GOLDEN_IDS.values(), key=len, reverse=True)
    for row, ids in zip(batch.tolist(), expected, strict=True):
        assert row[: len(ids)] == ids
        assert set(row[len(ids) :]) <= {tiny_encoder.tokenizer.pad_token_id}


# --- the tiny model -------------------------------------------------------------------------


def test_tiny_model_is_deterministic(
    tiny_model_dir: Path, minilm_dir: Path, tmp_path: Path
) -> None:
    from tests.model_fixtures import build_tiny_model

    again = build_tiny_model(tmp_path, minilm_dir)
    name = "model.safetensors"
    assert (again / name).read_bytes() == (tiny_model_dir / name).read_bytes()


def test_tiny_defaults(tiny_encoder: Encoder, tiny_model_dir: Path) -> None:
    e = tiny_encoder
    assert e.model_id == str(tiny_model_dir)
    assert (e.pooling, e.normalize, e.similarity) == ("cls", False, Similarity.DOT)
    assert (e.dim, e.device, e.dtype, e.batch_size) == (32, "cpu", "float32", 32)
    assert e.query_max_length == e.passage_max_length == 512
    text = repr(e)
    for part in ("Encoder(", "pooling='cls'", "similarity='dot'", "dim=32", "dtype='float32'"):
        assert part in text


def test_cls_matches_seed_recipe(tiny_encoder: Encoder, tiny_model_dir: Path) -> None:
    passages = [SEED_RELEVANT, SEED_OTHER]
    q_ref = seed_style_cls(tiny_model_dir, [SEED_QUERY])
    p_ref = seed_style_cls(tiny_model_dir, passages)
    q = tiny_encoder.encode_queries([SEED_QUERY])
    p = tiny_encoder.encode_passages(passages)
    np.testing.assert_allclose(q, q_ref, atol=1e-5)
    np.testing.assert_allclose(p, p_ref, atol=1e-5)
    np.testing.assert_allclose(q @ p.T, q_ref @ p_ref.T, rtol=1e-5, atol=1e-5)


def test_batched_equals_alone_and_order_is_kept(tiny_encoder: Encoder) -> None:
    batched = tiny_encoder.encode_passages(MIXED_TEXTS, batch_size=3)
    alone = np.stack([tiny_encoder.encode_passages([t])[0] for t in MIXED_TEXTS])
    assert np.abs(batched - alone).max() <= 1e-4
    reverse = tiny_encoder.encode_passages(MIXED_TEXTS[::-1], batch_size=5)
    assert np.abs(reverse[::-1] - batched).max() <= 1e-4
    # Distinct texts give distinct vectors, so a mix-up of rows would show.
    assert len({tuple(np.round(v, 4)) for v in batched}) == len(MIXED_TEXTS)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    texts=st.lists(st.text(alphabet="abc xyz.!é🤗", max_size=60), min_size=1, max_size=7),
    batch_size=st.integers(1, 4),
    seed=st.randoms(use_true_random=False),
)
def test_any_permutation_and_batch_size_give_the_same_rows(
    tiny_encoder: Encoder, texts: list[str], batch_size: int, seed
) -> None:
    perm = list(range(len(texts)))
    seed.shuffle(perm)
    base = tiny_encoder.encode_queries(texts)
    shuffled = tiny_encoder.encode_queries([texts[i] for i in perm], batch_size=batch_size)
    assert np.abs(shuffled - base[perm]).max() <= 1e-4


def test_truncation_flags(tiny_model_dir: Path) -> None:
    enc = Encoder(tiny_model_dir, device="cpu", passage_max_length=16, query_max_length=8)
    assert (enc.query_max_length, enc.passage_max_length) == (8, 16)
    # Each "word" is one token; [CLS] and [SEP] make two more.
    texts = ["word " * 15, "word " * 14, "", "word " * 3, "word " * 100]
    vectors, truncated = enc.encode_passages(texts, return_truncated=True)
    assert truncated.dtype == bool
    assert truncated.tolist() == [True, False, False, False, True]
    # A cut text is encoded as its first 14 words.
    cut = enc.encode_passages(["word " * 14])[0]
    assert np.abs(vectors[0] - cut).max() <= 1e-5
    assert np.abs(vectors[4] - cut).max() <= 1e-5
    # Queries use their own, shorter limit.
    q = enc.encode_queries(["word " * 14, "word " * 6])
    assert np.abs(q[0] - q[1]).max() <= 1e-5


def test_mean_pooling_is_a_masked_mean(tiny_model_dir: Path) -> None:
    enc = Encoder(tiny_model_dir, device="cpu", pooling="mean")
    assert enc.pooling == "mean" and enc.similarity is Similarity.DOT
    texts = MIXED_TEXTS[:3] + MIXED_TEXTS[4:]
    ref = masked_mean(tiny_model_dir, texts, 512)
    np.testing.assert_allclose(enc.encode_passages(texts, batch_size=2), ref, atol=1e-5)


def test_normalize_gives_unit_vectors_and_cosine(tiny_model_dir: Path) -> None:
    enc = Encoder(tiny_model_dir, device="cpu", normalize=True)
    assert enc.similarity is Similarity.COSINE
    vectors = enc.encode_passages(MIXED_TEXTS)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    plain = Encoder(tiny_model_dir, device="cpu", similarity="cosine")
    assert plain.normalize is False and plain.similarity is Similarity.COSINE
    np.testing.assert_allclose(unit(plain.encode_passages(MIXED_TEXTS)), vectors, atol=1e-5)


def test_shapes_dtypes_and_empty_input(tiny_encoder: Encoder) -> None:
    q = tiny_encoder.encode_queries(["a", "b c"])
    assert q.shape == (2, 32) and q.dtype == np.float32
    assert tiny_encoder.encode_queries([]).shape == (0, 32)
    empty, flags = tiny_encoder.encode_passages([], return_truncated=True)
    assert empty.shape == (0, 32) and empty.dtype == np.float32
    assert flags.shape == (0,) and flags.dtype == bool
    assert tiny_encoder.encode_passages(("a tuple works",)).shape == (1, 32)


def test_a_bare_string_is_refused(tiny_encoder: Encoder) -> None:
    with pytest.raises(TypeError, match="not a single string"):
        tiny_encoder.encode_queries("one query")


# --- choices --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "listed"),
    [
        ({"pooling": "max"}, "cls, mean"),
        ({"similarity": "l2"}, "dot, cosine"),
        ({"device": "tpu"}, "auto, cpu, cuda"),
        ({"dtype": "int8"}, "auto, float32, float16, bfloat16"),
    ],
)
def test_unknown_choice_lists_the_valid_ones(kwargs: dict, listed: str) -> None:
    # Choices are checked before loading: the model path does not even exist.
    with pytest.raises(ValueError, match=listed):
        Encoder("/nonexistent/dotbridge-model", **kwargs)


def test_bad_sizes(tiny_model_dir: Path) -> None:
    with pytest.raises(ValueError, match="limit of 512"):
        Encoder(tiny_model_dir, device="cpu", passage_max_length=513)
    with pytest.raises(ValueError, match="positive integer"):
        Encoder(tiny_model_dir, device="cpu", batch_size=0)
    with pytest.raises(ValueError, match="positive integer"):
        Encoder(tiny_model_dir, device="cpu", query_max_length=0)
    with pytest.raises(ValueError, match="at least 3"):
        Encoder(tiny_model_dir, device="cpu", query_max_length=2)
    assert Encoder(tiny_model_dir, device="cpu", query_max_length=3).encode_queries(
        ["a b"]
    ).shape == (1, 32)


def test_dtype_choice(tiny_model_dir: Path) -> None:
    auto = Encoder(tiny_model_dir, device="cpu", dtype="auto")
    assert auto.dtype == "float32"
    assert next(auto.model.parameters()).dtype == torch.float32
    bf16 = Encoder(tiny_model_dir, device="cpu", dtype="bfloat16")
    assert bf16.dtype == "bfloat16"
    assert next(bf16.model.parameters()).dtype == torch.bfloat16


def test_low_precision_agrees_with_float32(tiny_model_dir: Path) -> None:
    # bfloat16 runs on any CPU; float16 is checked too where a GPU is present.
    cases = [("cpu", "bfloat16", 0.99)]
    if torch.cuda.is_available():
        cases.append(("cuda", "float16", 0.999))
    reference = Encoder(tiny_model_dir, device="cpu").encode_passages(MIXED_TEXTS)
    for device, dtype, floor in cases:
        low = Encoder(tiny_model_dir, device=device, dtype=dtype).encode_passages(MIXED_TEXTS)
        assert low.dtype == np.float32
        cosines = (unit(low) * unit(reference)).sum(axis=1)
        assert cosines.min() >= floor, (device, dtype, cosines)


# --- the real MiniLM ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def minilm(minilm_dir: Path) -> Encoder:
    return Encoder(minilm_dir, device="cpu")


def test_minilm_settings_come_from_sentence_transformers_files(minilm: Encoder) -> None:
    assert (minilm.pooling, minilm.normalize, minilm.similarity) == (
        "mean",
        True,
        Similarity.COSINE,
    )
    assert minilm.dim == 384
    assert minilm.passage_max_length == minilm.query_max_length == 256


def test_minilm_matches_a_manual_mean_pool(minilm: Encoder, minilm_dir: Path) -> None:
    texts = [SEED_QUERY, SEED_RELEVANT, SEED_OTHER, "word " * 400]
    ref = unit(masked_mean(minilm_dir, texts, 256))
    np.testing.assert_allclose(minilm.encode_passages(texts, batch_size=3), ref, atol=1e-5)


def test_minilm_seed_texts_match_sentence_transformers(minilm: Encoder, minilm_dir: Path) -> None:
    """The reference implementation of this model, computed here, gives the same scores.

    MiniLM prefers the movie review (about 0.62 vs 0.47): the seed's ranking belongs to the
    seed model, so this checks agreement with sentence-transformers, not an order.
    """
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(minilm_dir), device="cpu")
    ref_q, ref_p = (
        reference.encode(texts, convert_to_numpy=True)
        for texts in ([SEED_QUERY], [SEED_RELEVANT, SEED_OTHER])
    )
    q = minilm.encode_queries([SEED_QUERY])
    p = minilm.encode_passages([SEED_RELEVANT, SEED_OTHER])
    np.testing.assert_allclose(q, ref_q, atol=1e-5)
    np.testing.assert_allclose(p, ref_p, atol=1e-5)
    np.testing.assert_allclose(q @ p.T, ref_q @ ref_p.T, atol=1e-5)


def test_minilm_ranks_the_relevant_passage_first(minilm: Encoder) -> None:
    q = minilm.encode_queries([SEED_QUERY])
    passages = [
        "The Transformers library provides thousands of pretrained models for text, vision "
        "and audio tasks.",
        "Preheat the oven, then whisk two eggs with a cup of flour and a pinch of salt.",
    ]
    relevant, other = (q @ minilm.encode_passages(passages).T)[0]
    assert relevant > other + 0.2


# --- the seed checkpoint, when a local copy is given ----------------------------------------


def test_seed_scores() -> None:
    path = os.environ.get("DOTBRIDGE_SEED_MODEL")
    if not path:
        pytest.skip(
            f"{SEED_MODEL}: DOTBRIDGE_SEED_MODEL not set: "
            "the seed checkpoint cannot be downloaded here"
        )
    enc = Encoder(path, device="cpu")
    assert (enc.pooling, enc.similarity, enc.dim) == ("cls", Similarity.DOT, 768)
    q = enc.encode_queries([SEED_QUERY])
    scores = (q @ enc.encode_passages([SEED_RELEVANT, SEED_OTHER]).T)[0]
    np.testing.assert_allclose(scores, SEED_SCORES, rtol=1e-4)


# --- loading errors -------------------------------------------------------------------------


def test_missing_directory(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    with pytest.raises(ModelLoadError, match="no such directory") as info:
        Encoder(str(missing), device="cpu")
    assert str(missing) in str(info.value) and "--model DIR" in str(info.value)
    assert info.value.__cause__ is not None


def test_empty_directory(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="Could not load model from directory") as info:
        Encoder(tmp_path, device="cpu")
    assert info.value.__cause__ is not None


def test_unknown_hub_id_offline_fails_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    # The library reads the variable at import; patch both so no request is ever tried.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    started = time.monotonic()
    with pytest.raises(ModelLoadError, match="offline or unknown id") as info:
        Encoder("dotbridge-tests/no-such-model", device="cpu")
    assert time.monotonic() - started < 10
    message = str(info.value)
    assert "hf download dotbridge-tests/no-such-model --local-dir DIR" in message
    assert "--model DIR" in message
    assert isinstance(info.value.__cause__, OSError)


def test_a_decoder_is_refused(tmp_path: Path) -> None:
    from transformers import GPT2Config

    GPT2Config(n_layer=1, n_embd=8, n_head=2, vocab_size=50).save_pretrained(tmp_path)
    with pytest.raises(ModelLoadError, match="'gpt2' model, not a BERT-like encoder"):
        Encoder(tmp_path, device="cpu")


def test_an_encoder_decoder_is_refused(tmp_path: Path) -> None:
    from transformers import T5Config

    T5Config(d_model=8, d_ff=16, num_layers=1, num_heads=2, vocab_size=50).save_pretrained(tmp_path)
    with pytest.raises(ModelLoadError, match="not a BERT-like encoder"):
        Encoder(tmp_path, device="cpu")


def test_sentence_transformers_files_set_the_defaults(tiny_model_dir: Path, tmp_path: Path) -> None:
    import shutil

    model_dir = tmp_path / "st-model"
    shutil.copytree(tiny_model_dir, model_dir)
    kinds = [("", "Transformer"), ("1_Pooling", "Pooling"), ("2_Normalize", "Normalize")]
    modules = [
        {"idx": i, "name": str(i), "path": path, "type": f"sentence_transformers.models.{kind}"}
        for i, (path, kind) in enumerate(kinds)
    ]
    (model_dir / "modules.json").write_text(json.dumps(modules))
    (model_dir / "sentence_bert_config.json").write_text('{"max_seq_length": 64}')
    (model_dir / "1_Pooling").mkdir()
    pooling = model_dir / "1_Pooling" / "config.json"
    pooling.write_text('{"pooling_mode_cls_token": true, "pooling_mode_mean_tokens": false}')
    enc = Encoder(model_dir, device="cpu")
    assert (enc.pooling, enc.normalize, enc.similarity) == ("cls", True, Similarity.COSINE)
    assert (enc.query_max_length, enc.passage_max_length) == (64, 64)
    # Explicit arguments win over the files.
    enc = Encoder(model_dir, device="cpu", pooling="mean", normalize=False, query_max_length=16)
    assert (enc.pooling, enc.normalize, enc.similarity) == ("mean", False, Similarity.DOT)
    assert (enc.query_max_length, enc.passage_max_length) == (16, 64)
    # A pooling this encoder cannot reproduce is refused rather than silently replaced.
    pooling.write_text('{"pooling_mode_cls_token": false, "pooling_mode_max_tokens": true}')
    with pytest.raises(ValueError, match="pooling 'max_tokens'.*cls, mean"):
        Encoder(model_dir, device="cpu")
    assert Encoder(model_dir, device="cpu", pooling="mean").pooling == "mean"


def test_fingerprint_names_the_weights_not_the_path(tiny_model_dir: Path, tmp_path: Path) -> None:
    import shutil

    copy = shutil.copytree(tiny_model_dir, tmp_path / "copy")
    original, copied = Encoder(tiny_model_dir, device="cpu"), Encoder(copy, device="cpu")
    assert original.fingerprint is not None and len(original.fingerprint) == 64
    assert copied.fingerprint == original.fingerprint
    other = tmp_path / "other"
    model = copied.model
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    model.save_pretrained(other)
    copied.tokenizer.save_pretrained(other)
    assert Encoder(other, device="cpu").fingerprint != original.fingerprint
