"""The ONNX Runtime path of the Encoder: equal to torch, cached export, int8, choices, index spec.

Every comparison runs the torch Encoder on the same texts in the same test. Exports go to a
temporary DOTBRIDGE_HOME (never the shared cache, where the node downloads live).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import click
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from bridge.cli.options import model_options
from bridge.encoder import Encoder, ModelLoadError, OnnxUnavailable
from bridge.encoder import onnx_runtime as ort_path
from bridge.errors import IndexMismatch
from bridge.indexes import META_KEY, IndexSpec, check_compatible
from tests.test_encoder import MIXED_TEXTS, SEED_OTHER, SEED_QUERY, SEED_RELEVANT, unit

REPO = Path(__file__).resolve().parents[1]
TOLERANCE = 1e-4  # the bar: max abs difference between ONNX float32 and torch

# SciFact-like passages and queries of mixed lengths, one longer than MiniLM's 256 tokens.
SCIENCE = [
    "Vitamin D supplementation and fracture risk in older adults: a randomised controlled trial "
    "of 2,686 participants found no reduction in hip fractures over five years.",
    "Aspirin use is associated with a lower incidence of colorectal cancer.",
    "BRCA1 mutations increase the lifetime risk of breast and ovarian cancer. " * 30,
    "Microglia prune synapses during development through complement signalling (C1q, C3).",
    "does smoking cause lung cancer",
    "β-amyloid plaques — Alzheimer's disease 🧠",
]


def in_home(home: Path, *args, **kwargs) -> Encoder:
    """An Encoder built with DOTBRIDGE_HOME=home, so its ONNX export is cached there."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DOTBRIDGE_HOME", str(home))
        return Encoder(*args, **kwargs)


def max_diff(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape and a.dtype == b.dtype == np.float32
    return float(np.abs(a - b).max())


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("dotbridge-home")


@pytest.fixture(scope="module")
def tiny_onnx(tiny_model_dir: Path, home: Path) -> Encoder:
    return in_home(home, tiny_model_dir, runtime="onnx")


@pytest.fixture(scope="module")
def minilm_torch(minilm_dir: Path) -> Encoder:
    return Encoder(minilm_dir, device="cpu")


@pytest.fixture(scope="module")
def minilm_onnx(minilm_dir: Path, home: Path) -> Encoder:
    return in_home(home, minilm_dir, runtime="onnx")


@pytest.fixture(scope="module")
def minilm_int8(minilm_dir: Path, home: Path) -> Encoder:
    return in_home(home, minilm_dir, runtime="onnx", quantize="int8")


# --- float32 ONNX equals torch --------------------------------------------------------------


def test_cls_model_equals_torch(tiny_encoder: Encoder, tiny_onnx: Encoder) -> None:
    """The seed architecture's path: DistilBERT, CLS vector, raw dot product."""
    assert (tiny_onnx.pooling, tiny_onnx.normalize) == ("cls", False)
    assert tiny_onnx.model is None and tiny_encoder.model is not None
    texts = MIXED_TEXTS + SCIENCE  # MIXED_TEXTS holds a text of 700 words: cut at 512 tokens
    ref, ref_cut = tiny_encoder.encode_passages(texts, batch_size=4, return_truncated=True)
    got, got_cut = tiny_onnx.encode_passages(texts, batch_size=4, return_truncated=True)
    assert got_cut.tolist() == ref_cut.tolist() and ref_cut.any()
    assert max_diff(got, ref) <= TOLERANCE
    # One at a time, as a query is encoded.
    alone = np.concatenate([tiny_onnx.encode_queries([t]) for t in texts])
    assert max_diff(alone, tiny_encoder.encode_queries(texts)) <= TOLERANCE
    # Distinct texts give distinct vectors, so equal outputs cannot come from a constant.
    assert len({tuple(np.round(v, 3)) for v in ref}) == len(texts)
    scores = tiny_onnx.encode_queries([SEED_QUERY]) @ got.T
    np.testing.assert_allclose(scores, tiny_encoder.encode_queries([SEED_QUERY]) @ ref.T, atol=1e-3)


def test_cls_model_equals_torch_with_short_limits(tiny_model_dir: Path, home: Path) -> None:
    kwargs = {"query_max_length": 8, "passage_max_length": 16}
    torch_enc = Encoder(tiny_model_dir, device="cpu", **kwargs)
    onnx_enc = in_home(home, tiny_model_dir, runtime="onnx", **kwargs)
    texts = ["word " * 15, "word " * 14, "", "word " * 3, SEED_RELEVANT]
    ref, ref_cut = torch_enc.encode_passages(texts, return_truncated=True)
    got, got_cut = onnx_enc.encode_passages(texts, return_truncated=True)
    assert got_cut.tolist() == ref_cut.tolist() == [True, False, False, False, True]
    assert max_diff(got, ref) <= TOLERANCE
    assert max_diff(onnx_enc.encode_queries(texts), torch_enc.encode_queries(texts)) <= TOLERANCE


def test_mean_pooling_minilm_equals_torch(minilm_torch: Encoder, minilm_onnx: Encoder) -> None:
    assert (minilm_onnx.pooling, minilm_onnx.normalize) == ("mean", True)
    assert minilm_onnx.passage_max_length == 256
    texts = [SEED_QUERY, SEED_RELEVANT, SEED_OTHER, "word " * 400, "", *SCIENCE]
    ref, ref_cut = minilm_torch.encode_passages(texts, batch_size=3, return_truncated=True)
    got, got_cut = minilm_onnx.encode_passages(texts, batch_size=3, return_truncated=True)
    assert got_cut.tolist() == ref_cut.tolist() and ref_cut.sum() == 2
    assert max_diff(got, ref) <= TOLERANCE
    for text, row in zip(texts, ref, strict=True):
        assert max_diff(minilm_onnx.encode_queries([text])[0], row) <= TOLERANCE
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_mean_pooling_without_normalising_equals_torch(tiny_model_dir: Path, home: Path) -> None:
    torch_enc = Encoder(tiny_model_dir, device="cpu", pooling="mean")
    onnx_enc = in_home(home, tiny_model_dir, runtime="onnx", pooling="mean")
    texts = MIXED_TEXTS + SCIENCE
    assert max_diff(onnx_enc.encode_passages(texts), torch_enc.encode_passages(texts)) <= TOLERANCE


# --- the cached export ----------------------------------------------------------------------


def graph_dir(home: Path, encoder: Encoder) -> Path:
    return home / "onnx" / f"v{ort_path.EXPORT_FORMAT}" / str(encoder.fingerprint)


def test_export_is_cached_by_weights_and_reused(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("DOTBRIDGE_HOME", str(home))
    first = Encoder(tiny_model_dir, runtime="onnx")
    graph = graph_dir(home, first) / "model.onnx"
    assert first._forward.path == graph and graph.is_file()
    meta = json.loads((graph.parent / "model.onnx.json").read_text())
    assert meta["weights_sha256"] == first.fingerprint
    assert meta["max_abs_diff_vs_torch"] <= TOLERANCE
    assert meta["fused_ops"].get("Attention") == 2  # one fused attention per layer
    made = graph.stat().st_mtime_ns

    # The same weights under another path: neither exported nor even loaded into torch again.
    def refuse(*args, **kwargs):
        raise AssertionError("the cached export was not reused")

    monkeypatch.setattr(torch.onnx, "export", refuse)
    monkeypatch.setattr("bridge.encoder.onnx_runtime.load_weights", refuse)
    monkeypatch.setattr("bridge.encoder.core.load_weights", refuse)
    copy = shutil.copytree(tiny_model_dir, tmp_path / "copy")
    second = Encoder(copy, runtime="onnx")
    assert second._forward.path == graph and graph.stat().st_mtime_ns == made
    texts = MIXED_TEXTS[:4]
    assert max_diff(second.encode_passages(texts), first.encode_passages(texts)) == 0.0


def test_a_stale_or_half_written_export_is_replaced(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("DOTBRIDGE_HOME", str(home))
    reference = Encoder(tiny_model_dir, device="cpu").encode_passages(MIXED_TEXTS)
    exports = []
    real_export = torch.onnx.export
    monkeypatch.setattr(
        torch.onnx, "export", lambda *a, **k: exports.append(1) or real_export(*a, **k)
    )
    first = Encoder(tiny_model_dir, runtime="onnx")
    graph = first._forward.path
    sidecar = graph.with_name("model.onnx.json")
    assert len(exports) == 1
    # A graph whose sidecar is missing (a crash between the two renames) is not trusted.
    sidecar.unlink()
    graph.write_bytes(b"not a graph")
    healed = Encoder(tiny_model_dir, runtime="onnx")
    assert max_diff(healed.encode_passages(MIXED_TEXTS), reference) <= TOLERANCE
    assert len(exports) == 2
    # A graph made by another export recipe is not used either.
    meta = json.loads(sidecar.read_text())
    sidecar.write_text(json.dumps({**meta, "format": meta["format"] - 1}))
    again = Encoder(tiny_model_dir, runtime="onnx")
    assert len(exports) == 3
    assert max_diff(again.encode_passages(MIXED_TEXTS), reference) <= TOLERANCE
    assert sorted(p.name for p in graph.parent.iterdir()) == ["model.onnx", "model.onnx.json"]


CONCURRENT_SCRIPT = """
import json, os, sys, time
from pathlib import Path
from bridge.encoder import Encoder
ready, go = Path(sys.argv[2]), Path(sys.argv[3])
ready.touch()
while not go.exists():
    time.sleep(0.01)
enc = Encoder(sys.argv[1], runtime="onnx")
print(json.dumps(enc.encode_passages(json.loads(sys.argv[4])).tolist()))
"""


def test_two_processes_exporting_at_once_both_succeed(
    tiny_encoder: Encoder, tiny_model_dir: Path, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    env = {**os.environ, "DOTBRIDGE_HOME": str(home), "PYTHONPATH": str(REPO)}
    go = tmp_path / "go"
    texts = json.dumps(MIXED_TEXTS)
    procs, readies = [], []
    for i in range(2):
        ready = tmp_path / f"ready-{i}"
        readies.append(ready)
        args = [sys.executable, "-c", CONCURRENT_SCRIPT, str(tiny_model_dir), ready, go, texts]
        procs.append(subprocess.Popen(args, env=env, stdout=subprocess.PIPE, text=True))
    deadline = time.monotonic() + 120
    while not all(r.exists() for r in readies):  # both imported: start them together
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs)
        time.sleep(0.05)
    go.touch()
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    reference = tiny_encoder.encode_passages(MIXED_TEXTS)
    for out in outputs:
        vectors = np.asarray(json.loads(out.strip().splitlines()[-1]), dtype=np.float32)
        assert max_diff(vectors, reference) <= TOLERANCE
    folder = graph_dir(home, tiny_encoder)
    assert sorted(p.name for p in folder.iterdir()) == ["model.onnx", "model.onnx.json"]


# --- int8 -----------------------------------------------------------------------------------


def test_int8_is_close_to_float32_but_not_equal(
    minilm_onnx: Encoder, minilm_int8: Encoder, home: Path
) -> None:
    assert minilm_int8.quantize == "int8" and minilm_onnx.quantize == "none"
    assert "quantize='int8'" in repr(minilm_int8) and "runtime='onnx'" in repr(minilm_int8)
    graph = minilm_int8._forward.path
    assert graph.name == "model-int8.onnx"
    assert json.loads(graph.with_name("model-int8.onnx.json").read_text())["quantize"] == "int8"
    # int8 layer weights (the 47 MB embedding table stays float32): a smaller graph.
    assert graph.stat().st_size < 0.8 * minilm_onnx._forward.path.stat().st_size
    texts = [SEED_QUERY, SEED_RELEVANT, SEED_OTHER, *SCIENCE]
    exact = minilm_onnx.encode_passages(texts)
    low = minilm_int8.encode_passages(texts)
    assert low.dtype == np.float32
    assert max_diff(low, exact) > 1e-3  # really quantized
    cosines = (unit(low) * unit(exact)).sum(axis=1)
    assert cosines.min() >= 0.98, cosines
    # The ranking of a clear case survives.
    q = minilm_int8.encode_queries(["does smoking cause lung cancer"])
    scores = (q @ minilm_int8.encode_passages(["Smoking causes lung cancer.", "Bake bread."]).T)[0]
    assert scores[0] > scores[1] + 0.2


# --- choices and a missing extra ------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"runtime": "tensorrt"}, "unknown runtime 'tensorrt'; choose one of: torch, onnx"),
        ({"runtime": "onnx", "quantize": "int4"}, "unknown quantize 'int4'; choose one of: none"),
        ({"quantize": "int8"}, "pass runtime='onnx' as well"),
        ({"runtime": "onnx", "device": "cuda"}, "runtime 'onnx' runs on the CPU"),
        ({"runtime": "onnx", "device": "tpu"}, "unknown device 'tpu'"),
        ({"runtime": "onnx", "dtype": "float16"}, "runtime 'onnx' computes in float32"),
        ({"runtime": "onnx", "dtype": "int4"}, "unknown dtype 'int4'"),
    ],
)
def test_unknown_or_conflicting_choices_fail_before_loading(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        Encoder("/nonexistent/dotbridge-model", **kwargs)


def hide_onnx(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name in ("onnxruntime", "onnx") else real(name, *a),
    )


def test_missing_extra_is_one_sentence(tiny_model_dir: Path, monkeypatch) -> None:
    hide_onnx(monkeypatch)
    with pytest.raises(OnnxUnavailable) as info:
        Encoder(tiny_model_dir, runtime="onnx")
    assert isinstance(info.value, ModelLoadError)
    assert str(info.value) == (
        "runtime 'onnx' needs onnxruntime and onnx, not installed here: "
        "pip install 'dotbridge[onnx]'"
    )


def test_torch_runtime_never_imports_onnx(tiny_model_dir: Path) -> None:
    code = (
        "import sys; import bridge.cli; from bridge.encoder import Encoder; "
        f"Encoder({str(tiny_model_dir)!r}, device='cpu').encode_queries(['a']); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('onnx', 'onnxruntime')))"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


@click.command()
@model_options
def show_encoder(model_settings) -> None:
    click.echo(repr(model_settings.load()))


def test_cli_flags_reach_the_encoder(tiny_model_dir: Path, home: Path) -> None:
    runner = CliRunner()
    env = {"DOTBRIDGE_HOME": str(home)}
    args = ["--model", str(tiny_model_dir), "--runtime", "onnx", "--quantize", "int8"]
    result = runner.invoke(show_encoder, args, env=env)
    assert result.exit_code == 0, result.output
    assert "runtime='onnx', quantize='int8'" in result.output
    result = runner.invoke(show_encoder, ["--model", str(tiny_model_dir)], env=env)
    assert "runtime='torch', quantize='none'" in result.output


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--runtime", "tensorrt"], 2, "'tensorrt' is not one of 'torch', 'onnx'"),
        (["--quantize", "int4"], 2, "'int4' is not one of 'none', 'int8'"),
        (["--runtime", "torch", "--quantize", "int8"], 1, "Error: quantize='int8' is ONNX"),
        (["--runtime", "onnx", "--dtype", "float16"], 1, "Error: runtime 'onnx' computes in"),
    ],
)
def test_cli_bad_choices_are_one_sentence(
    tiny_model_dir: Path, args: list[str], code: int, message: str
) -> None:
    result = CliRunner().invoke(show_encoder, ["--model", str(tiny_model_dir), *args])
    assert result.exit_code == code and message in result.output
    assert "Traceback" not in result.output and not isinstance(result.exception, ValueError)


def test_cli_without_the_extra(tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hide_onnx(monkeypatch)
    args = ["--model", str(tiny_model_dir), "--runtime", "onnx"]
    result = CliRunner().invoke(show_encoder, args)
    assert result.exit_code == 1
    assert result.output.strip().endswith("pip install 'dotbridge[onnx]'")
    assert len(result.output.strip().splitlines()) == 1


# --- what an index records, and which encoders it accepts -----------------------------------


@pytest.fixture(scope="module")
def tiny_int8(tiny_model_dir: Path, home: Path) -> Encoder:
    return in_home(home, tiny_model_dir, runtime="onnx", quantize="int8")


def test_index_spec_records_runtime_quantization_dtype(
    tiny_encoder: Encoder, tiny_onnx: Encoder, tiny_int8: Encoder
) -> None:
    specs = [IndexSpec.of(e) for e in (tiny_encoder, tiny_onnx, tiny_int8)]
    assert [(s.runtime, s.quantization, s.dtype) for s in specs] == [
        ("torch", "none", "float32"),
        ("onnx", "none", "float32"),
        ("onnx", "int8", "float32"),
    ]
    for spec in specs:
        stored = spec.meta()[META_KEY]
        assert (stored["runtime"], stored["quantization"]) == (spec.runtime, spec.quantization)
        assert IndexSpec.from_meta(spec.meta()) == spec


def test_torch_and_onnx_float32_share_an_index(tiny_encoder: Encoder, tiny_onnx: Encoder) -> None:
    torch_spec, onnx_spec = IndexSpec.of(tiny_encoder), IndexSpec.of(tiny_onnx)
    check_compatible("idx", torch_spec, onnx_spec)
    check_compatible("idx", onnx_spec, torch_spec)


def test_int8_and_float32_do_not_share_an_index(
    tiny_encoder: Encoder, tiny_onnx: Encoder, tiny_int8: Encoder
) -> None:
    int8 = IndexSpec.of(tiny_int8)
    for exact in (IndexSpec.of(tiny_encoder), IndexSpec.of(tiny_onnx)):
        with pytest.raises(IndexMismatch) as info:
            check_compatible("idx", int8, exact)
        message = str(info.value)
        assert "quantization int8 (index) vs none (encoder)" in message
        assert "--quantize int8 --runtime onnx" in message
        with pytest.raises(IndexMismatch, match=r"quantization none \(index\) vs int8 \(encoder\)"):
            check_compatible("idx", exact, int8)
    check_compatible("idx", int8, IndexSpec.of(tiny_int8))


def test_an_index_made_before_these_fields_counts_as_float32(
    tiny_encoder: Encoder, tiny_onnx: Encoder, tiny_int8: Encoder
) -> None:
    meta = IndexSpec.of(tiny_encoder).meta()
    for key in ("runtime", "quantization", "dtype"):
        del meta[META_KEY][key]
    old = IndexSpec.from_meta(meta)
    assert (old.runtime, old.quantization, old.dtype) == ("torch", "none", "float32")
    check_compatible("old", old, IndexSpec.of(tiny_encoder))
    check_compatible("old", old, IndexSpec.of(tiny_onnx))
    with pytest.raises(IndexMismatch, match="quantization none"):
        check_compatible("old", old, IndexSpec.of(tiny_int8))
