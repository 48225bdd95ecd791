"""The ONNX Runtime forward pass: the torch weights exported once, cached, run on the CPU.

The graph maps (input_ids, attention_mask) to the last hidden state, so tokenising, batching and
pooling stay in the Encoder, shared with torch. An export is made from the local weights at first
use (never fetched), checked against torch before it is kept, and cached under
`$DOTBRIDGE_HOME/onnx/v{EXPORT_FORMAT}/<weights SHA-256>/`, so every later Encoder on the same
weights (another path, another process) loads it without touching torch's copy of the model.
Needs the `onnx` extra: onnxruntime (inference, fusion, quantization) and onnx.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from bridge.encoder.loading import ModelLoadError, OnnxUnavailable, load_weights, model_folder

if TYPE_CHECKING:
    from bridge.encoder.core import Encoder

log = logging.getLogger(__name__)

# Bump when the export recipe changes: graphs cached by an older recipe are then left alone.
EXPORT_FORMAT = 1
OPSET = 17
# An export is kept only when it reproduces torch within this (max abs, hidden states).
TOLERANCE = 1e-4
INPUTS = ("input_ids", "attention_mask")
OUTPUT = "last_hidden_state"
GRAPHS = {"none": "model.onnx", "int8": "model-int8.onnx"}

# The TorchScript tracer keeps global state: one export at a time in a process. Processes
# race safely: each writes its own temporary files and renames them into place.
_export_lock = threading.Lock()


def require() -> None:
    """Raise OnnxUnavailable, in one sentence, when the `onnx` extra is not installed."""
    missing = [name for name in ("onnxruntime", "onnx") if importlib.util.find_spec(name) is None]
    if missing:
        raise OnnxUnavailable(
            f"runtime 'onnx' needs {' and '.join(missing)}, not installed here: "
            "pip install 'dotbridge[onnx]'"
        )


def cache_root() -> Path:
    """Where exports live: below the dotbridge cache directory (DOTBRIDGE_HOME)."""
    from bridge.home import base_dir

    return base_dir() / "onnx" / f"v{EXPORT_FORMAT}"


class OnnxForward:
    """One ONNX Runtime CPU session; called with int64 ids and mask, returns hidden states.

    threads (intra-op; None: one per physical core), spin (busy-wait between operators) and
    level (graph optimisation) are ONNX Runtime's session options, measured in
    benchmarks/bench_encoder_options.py.
    """

    def __init__(
        self,
        path: Path,
        *,
        threads: int | None = None,
        spin: bool | None = None,
        level: str = "all",
        keep: Any = None,
    ) -> None:
        import onnxruntime as ort

        levels = {
            "none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }
        if level not in levels:
            raise ValueError(f"unknown level {level!r}; choose one of: {', '.join(levels)}")
        options = ort.SessionOptions()
        options.graph_optimization_level = levels[level]
        options.log_severity_level = 3  # warnings about unused initializers are noise here
        if threads is not None:
            options.intra_op_num_threads = threads
        if spin is not None:
            options.add_session_config_entry("session.intra_op.allow_spinning", str(int(spin)))
        self.path = path
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self._keep = keep  # a temporary directory that must outlive the session

    def __call__(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return self.session.run([OUTPUT], {INPUTS[0]: ids, INPUTS[1]: mask})[0]


def session_for(encoder: Encoder) -> OnnxForward:
    """The session for the encoder's weights and quantization, exporting them at first use."""
    keep = None
    if encoder.fingerprint is None:
        # Without a digest of the weights nothing identifies a cached graph: export afresh.
        log.warning("no weight files found for %s: the ONNX export is not cached", encoder.model_id)
        keep = tempfile.TemporaryDirectory(prefix="dotbridge-onnx-")
        folder = Path(keep.name)
    else:
        folder = cache_root() / encoder.fingerprint
    path = graph_path(encoder, folder)
    # No spin-waiting: measured on 2 shared cores (bench_encoder_options.py), busy threads
    # only took CPU from whatever else runs (OpenSearch, the indexing thread): int8 35 vs 22
    # passages/s, float32 query p95 14 vs 27 ms, p50 no worse.
    return OnnxForward(path, spin=False, keep=keep)


def graph_path(encoder: Encoder, folder: Path) -> Path:
    """The cached graph for the encoder in `folder`, made (and checked) when missing or stale."""
    identity = _identity(encoder)
    fp32 = folder / GRAPHS["none"]
    if not _is_current(fp32, identity):
        with _export_lock:
            if not _is_current(fp32, identity):
                _export(encoder, fp32, identity)
    if encoder.quantize == "none":
        return fp32
    quantized = folder / GRAPHS[encoder.quantize]
    if not _is_current(quantized, identity):
        with _export_lock:
            if not _is_current(quantized, identity):
                _quantize_int8(fp32, quantized, identity)
    return quantized


def _identity(encoder: Encoder) -> dict[str, Any]:
    """What a cached graph must have been made from to be used: recipe, weights, config."""
    folder = model_folder(encoder.source)
    config = folder / "config.json" if folder is not None else None
    config_sha = (
        hashlib.sha256(config.read_bytes()).hexdigest()
        if config is not None and config.is_file()
        else None
    )
    return {
        "format": EXPORT_FORMAT,
        "weights_sha256": encoder.fingerprint,
        "config_sha256": config_sha,
    }


def _sidecar(graph: Path) -> Path:
    return graph.with_name(graph.name + ".json")


def _is_current(graph: Path, identity: dict[str, Any]) -> bool:
    try:
        meta = json.loads(_sidecar(graph).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return graph.is_file() and all(meta.get(k) == v for k, v in identity.items())


@contextlib.contextmanager
def _staging(folder: Path) -> Iterator[Path]:
    """A private scratch directory beside the target, so that a rename puts files in place."""
    folder.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".staging-", dir=folder))
    try:
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _publish(made: Path, graph: Path, meta: dict[str, Any]) -> None:
    # The graph first, its sidecar last: a sidecar always names a complete graph.
    os.replace(made, graph)
    note = made.with_name(made.name + ".json")
    note.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    os.replace(note, _sidecar(graph))


def _export(encoder: Encoder, graph: Path, identity: dict[str, Any]) -> None:
    import onnxruntime
    import transformers

    log.info("exporting %s to ONNX (once for these weights): %s", encoder.model_id, graph)
    wrapper = _eager_wrapper(encoder)
    with _staging(graph.parent) as scratch:
        raw = scratch / "raw.onnx"
        trace(encoder, raw, wrapper)
        checks = _check_batches(encoder)
        expected = [_torch_hidden(wrapper, i, m) for i, m in checks]
        fused_ops = _fuse(raw, scratch / "fused.onnx", encoder.config)
        chosen, diff = raw, _max_diff(raw, checks, expected)
        if fused_ops is not None:
            fused_diff = _max_diff(scratch / "fused.onnx", checks, expected)
            if fused_diff <= TOLERANCE:
                chosen, diff = scratch / "fused.onnx", fused_diff
            else:
                log.warning("fused ONNX graph differs from torch by %.2g: kept unfused", fused_diff)
                fused_ops = None
        if diff > TOLERANCE:
            raise ModelLoadError(
                f"The ONNX export of model {encoder.model_id!r} differs from torch by {diff:.2g} "
                f"(more than {TOLERANCE:g}); use --runtime torch."
            )
        _publish(
            chosen,
            graph,
            {
                **identity,
                "model": encoder.model_id,
                "quantize": "none",
                "opset": OPSET,
                "fused_ops": fused_ops or {},
                "max_abs_diff_vs_torch": diff,
                "torch": torch.__version__,
                "transformers": transformers.__version__,
                "onnxruntime": onnxruntime.__version__,
            },
        )


def _eager_wrapper(encoder: Encoder) -> _LastHiddenState:
    # Eager attention traces to plain MatMul/Softmax nodes, which ONNX Runtime's transformer
    # optimizer fuses into its Attention kernel; the SDPA path does not fuse.
    model = load_weights(encoder.source, attn_implementation="eager").float()
    return _LastHiddenState(model).eval()


def trace(encoder: Encoder, raw: Path, wrapper: _LastHiddenState | None = None) -> None:
    """Export the encoder's weights, unfused, to `raw` (benchmarks compare it with the fused)."""
    wrapper = wrapper if wrapper is not None else _eager_wrapper(encoder)
    ids, mask = _sample_batch(encoder, ["dense retrieval with a bi-encoder", "a query"])
    try:
        with warnings.catch_warnings(), torch.inference_mode():
            warnings.simplefilter("ignore")  # tracer and deprecation notes, none actionable
            torch.onnx.export(
                wrapper,
                (torch.from_numpy(ids), torch.from_numpy(mask)),
                str(raw),
                dynamo=False,
                input_names=list(INPUTS),
                output_names=[OUTPUT],
                dynamic_axes={
                    INPUTS[0]: {0: "batch", 1: "sequence"},
                    INPUTS[1]: {0: "batch", 1: "sequence"},
                    OUTPUT: {0: "batch", 1: "sequence"},
                },
                opset_version=OPSET,
                do_constant_folding=True,
            )
    except Exception as exc:
        raise ModelLoadError(
            f"Could not export model {encoder.model_id!r} to ONNX "
            f"({_first_line(exc)}); use --runtime torch."
        ) from exc


def _quantize_int8(fp32: Path, graph: Path, identity: dict[str, Any]) -> None:
    import onnx
    import onnxruntime
    from onnxruntime.quantization import QuantType, quantize_dynamic

    log.info("quantizing %s to int8 (once for these weights)", fp32)
    with _staging(graph.parent) as scratch:
        made = scratch / graph.name
        with _quiet():
            quantize_dynamic(
                fp32,
                made,
                weight_type=QuantType.QInt8,
                # Measured on MiniLM / SciFact: one scale per output channel and the fused
                # Attention left in float32 keep cosine to float32 near 0.995; per-tensor
                # scales on every operator gave 0.935.
                per_channel=True,
                op_types_to_quantize=["MatMul"],
                # Shape inference cannot type the outputs of the fused (contrib) operators.
                extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
            )
        _publish(
            made,
            graph,
            {
                **identity,
                "quantize": "int8",
                "method": "quantize_dynamic: MatMul weights QInt8 per channel, activations dynamic",
                "onnxruntime": onnxruntime.__version__,
            },
        )


def _fuse(raw: Path, out: Path, config: Any) -> dict[str, int] | None:
    """ONNX Runtime's transformer fusions (attention, layer norms, GELU); None when they fail."""
    try:
        from onnxruntime.transformers import optimizer

        with _quiet():
            model = optimizer.optimize_model(
                str(raw),
                model_type="bert",
                num_heads=int(getattr(config, "num_attention_heads", 0) or 0),
                hidden_size=int(getattr(config, "hidden_size", 0) or 0),
                opt_level=0,  # fusions only; the session applies the generic graph passes
            )
            model.save_model_to_file(str(out))
            stats = model.get_fused_operator_statistics()
    except Exception as exc:  # an architecture the fusions do not know: the plain graph works
        log.warning("ONNX Runtime fusions failed (%s): using the unfused graph", _first_line(exc))
        return None
    return {name: count for name, count in stats.items() if count}


class _LastHiddenState(torch.nn.Module):
    """Calls the model with ids and mask only, returning its last hidden state."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask)[0]


def _sample_batch(encoder: Encoder, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Right-padded int64 ids and mask for texts, as the Encoder builds its batches."""
    rows = encoder.tokenizer(texts, truncation=True, max_length=encoder.passage_max_length)
    rows = rows["input_ids"]
    width = max(len(r) for r in rows)
    ids = np.full((len(rows), width), encoder._pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = row
        mask[i, : len(row)] = 1
    return ids, mask


def _check_batches(encoder: Encoder) -> list[tuple[np.ndarray, np.ndarray]]:
    """Shapes unlike the traced one (other batch sizes and widths, padding), to prove them free."""
    return [
        _sample_batch(encoder, ["x"]),
        _sample_batch(
            encoder,
            [
                "Vitamin D supplementation and the risk of fractures in older adults: "
                "a randomised trial of 2,686 people over five years. " * 3,
                "a",
                "the quick brown fox jumps over the lazy dog",
            ],
        ),
    ]


def _torch_hidden(wrapper: Any, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return wrapper(torch.from_numpy(ids), torch.from_numpy(mask)).float().numpy()


def _max_diff(graph: Path, checks: list[tuple[np.ndarray, np.ndarray]], expected: list) -> float:
    """Largest difference from torch over real (unpadded) positions; padding is never pooled."""
    forward = OnnxForward(graph)
    worst = 0.0
    for (ids, mask), want in zip(checks, expected, strict=True):
        got = forward(ids, mask)
        real = mask.astype(bool)
        worst = max(worst, float(np.abs(got[real] - want[real]).max()))
    return worst


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the optimizer's and quantizer's chatter for the few seconds they run, once per
    weights: they log benign advice through many module loggers and the root logger."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(previous)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
