"""The bi-encoder: queries and passages in, float32 vectors out; knows nothing of OpenSearch.

    from bridge.encoder import Encoder
    Encoder(model_dir)                                     # torch, the default
    Encoder(model_dir, runtime="onnx")                     # ONNX Runtime, CPU, same vectors
    Encoder(model_dir, runtime="onnx", quantize="int8")    # int8 weights: faster, other vectors

core.py holds the Encoder and its one embed step, loading.py the checkpoint and its settings,
onnx_runtime.py the ONNX export, its cache and session (imported only when asked for).
"""

from __future__ import annotations

from bridge.config import DEVICES, DTYPES, POOLINGS, QUANTIZATIONS, RUNTIMES, SEED_MODEL
from bridge.encoder.core import Encoder, valid_unicode
from bridge.encoder.loading import ModelLoadError, OnnxUnavailable

__all__ = [
    "DEVICES",
    "DTYPES",
    "POOLINGS",
    "QUANTIZATIONS",
    "RUNTIMES",
    "SEED_MODEL",
    "Encoder",
    "ModelLoadError",
    "OnnxUnavailable",
    "valid_unicode",
]
