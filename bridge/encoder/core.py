"""Bi-encoder: turns queries and passages into float32 vectors; knows nothing of OpenSearch.

One embed step (tokenise, sort by length, batch, pool, normalise) serves both runtimes; only the
forward pass differs: torch (any device and dtype) or an ONNX Runtime session on the CPU.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import os
import re
from collections.abc import Callable, Sequence

import numpy as np
import torch

from bridge.config import (
    DEVICES,
    DTYPES,
    POOLINGS,
    QUANTIZATIONS,
    RUNTIMES,
    SEED_MODEL,
    resolve_model,
)
from bridge.encoder.loading import (
    load_config_and_tokenizer,
    load_weights,
    model_folder,
    model_length_limit,
    sentence_transformers_settings,
)
from bridge.errors import BadInput
from mappings import Similarity

# "auto" maps to None: float16 on CUDA, else float32.
TORCH_DTYPES = {name: None if name == "auto" else getattr(torch, name) for name in DTYPES}

# A forward pass: right-padded token ids and their 0/1 mask (int64, batch x width) in, the last
# hidden state (batch x width x dim) out, as a torch tensor or a numpy array.
Forward = Callable[[np.ndarray, np.ndarray], "torch.Tensor | np.ndarray"]


class Encoder:
    """A BERT-like encoder with CLS or mean pooling, scored by dot product or cosine.

    runtime="onnx" runs the same weights through ONNX Runtime on the CPU (exported once and
    cached by the weights' SHA-256); quantize="int8" adds its dynamic int8 quantization, which
    makes different vectors (a different model for an index), faster.
    """

    def __init__(
        self,
        model: str | os.PathLike[str] = SEED_MODEL,
        *,
        pooling: str | None = None,
        normalize: bool | None = None,
        similarity: str | Similarity | None = None,
        query_max_length: int | None = None,
        passage_max_length: int | None = None,
        device: str = "auto",
        dtype: str = "auto",
        batch_size: int = 32,
        runtime: str = "torch",
        quantize: str | None = None,
    ) -> None:
        # Validate every choice before the (slow) load so a typo fails at once.
        if pooling is not None and pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r}; choose one of: {', '.join(POOLINGS)}")
        sim = Similarity.parse(similarity) if similarity is not None else None
        self.runtime = _choice("runtime", runtime, RUNTIMES)
        self.quantize = _choice("quantize", "none" if quantize is None else quantize, QUANTIZATIONS)
        if self.runtime == "onnx":
            from bridge.encoder import onnx_runtime

            self.device = _onnx_device(device)
            torch_dtype = _onnx_dtype(dtype)
            onnx_runtime.require()
        else:
            if self.quantize != "none":
                raise ValueError(
                    f"quantize={self.quantize!r} is ONNX Runtime's dynamic quantization; "
                    "pass runtime='onnx' as well"
                )
            self.device = _parse_device(device)
            torch_dtype = _parse_dtype(dtype, self.device)
        self.batch_size = _positive_int("batch_size", batch_size)

        self.model_id = str(model)  # as given: what an index records
        self.source = resolve_model(self.model_id)  # where it loads from (`minilm`: the package)
        self.config, self.tokenizer = load_config_and_tokenizer(self.source)
        self.dtype = str(torch_dtype).removeprefix("torch.")
        self.dim = int(self.config.hidden_size)
        self._pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0

        st = sentence_transformers_settings(self.source)
        if pooling is None:
            if st.pooling is not None and st.pooling not in POOLINGS:
                raise ValueError(
                    f"model {self.model_id!r} uses sentence-transformers pooling {st.pooling!r}, "
                    f"which is not supported; pass pooling= one of: {', '.join(POOLINGS)}"
                )
            pooling = st.pooling or "cls"
        self.pooling = pooling
        self.normalize = bool(st.normalize if normalize is None else normalize)
        if sim is None:
            sim = Similarity.COSINE if self.normalize else Similarity.DOT
        self.similarity = sim

        limit = model_length_limit(self.config, self.tokenizer)
        # Room for the special tokens and at least one real token.
        floor = self.tokenizer.num_special_tokens_to_add(pair=False) + 1
        if passage_max_length is None:
            default = st.max_seq_length if st.max_seq_length is not None else limit
            self.passage_max_length = min(default, limit)
        else:
            self.passage_max_length = _check_length(
                "passage_max_length", passage_max_length, floor, limit
            )
        if query_max_length is None:
            self.query_max_length = self.passage_max_length
        else:
            self.query_max_length = _check_length(
                "query_max_length", query_max_length, floor, limit
            )

        # The weights last: every setting above is checked before this (slow) step.
        self.model: torch.nn.Module | None
        self._forward: Forward
        if self.runtime == "onnx":
            self.model = None  # on a cache hit the torch weights are never loaded
            self._forward = onnx_runtime.session_for(self)
        else:
            self.model = load_weights(self.source)
            self.model.to(device=self.device, dtype=torch_dtype)
            self._forward = functools.partial(_torch_forward, self.model, self.device)

    @functools.cached_property
    def fingerprint(self) -> str | None:
        """SHA-256 of the weight files: the same checkpoint, wherever it was loaded from.

        Indexes record it, so that a local copy of a hub model (or the same package in another
        virtualenv) counts as the model that made the vectors. None when no file is found.
        """
        folder = model_folder(self.source)
        if folder is None:
            return None
        files = sorted(folder.glob("*.safetensors")) or sorted(folder.glob("pytorch_model*.bin"))
        if not files:
            return None
        digest = hashlib.sha256()
        for path in files:
            with path.open("rb") as fh:
                while chunk := fh.read(1 << 22):
                    digest.update(chunk)
        return digest.hexdigest()

    def __repr__(self) -> str:
        return (
            f"Encoder(model={self.model_id!r}, pooling={self.pooling!r}, "
            f"normalize={self.normalize}, similarity={self.similarity.value!r}, dim={self.dim}, "
            f"runtime={self.runtime!r}, quantize={self.quantize!r}, "
            f"device={self.device!r}, dtype={self.dtype!r}, "
            f"query_max_length={self.query_max_length}, "
            f"passage_max_length={self.passage_max_length}, batch_size={self.batch_size})"
        )

    def encode_queries(self, texts: Sequence[str], *, batch_size: int | None = None) -> np.ndarray:
        """Vectors of shape (len(texts), dim), float32, in input order."""
        vectors, _ = self._embed(texts, self.query_max_length, batch_size)
        return vectors

    def encode_passages(
        self,
        texts: Sequence[str],
        *,
        batch_size: int | None = None,
        return_truncated: bool = False,
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Vectors like encode_queries; with return_truncated also a bool array of cut texts."""
        vectors, truncated = self._embed(texts, self.passage_max_length, batch_size)
        return (vectors, truncated) if return_truncated else vectors

    def _embed(
        self, texts: Sequence[str], max_length: int, batch_size: int | None
    ) -> tuple[np.ndarray, np.ndarray]:
        if isinstance(texts, str):
            # A bare string is a Sequence[str] too and would be encoded character by character.
            raise TypeError("texts must be a sequence of strings, not a single string")
        bs = self.batch_size if batch_size is None else _positive_int("batch_size", batch_size)
        n = len(texts)
        if n == 0:
            return np.zeros((0, self.dim), dtype=np.float32), np.zeros(0, dtype=bool)

        # One tokenizer call for the whole input. Overflow rows are requested only to learn
        # which texts were cut: the first row of every text is its truncated encoding.
        enc = self.tokenizer(
            [valid_unicode(text) for text in texts],
            truncation=True,
            max_length=max_length,
            stride=0,
            return_overflowing_tokens=True,
            return_length=True,
            return_attention_mask=False,
            return_token_type_ids=False,
        )
        sample = np.asarray(enc["overflow_to_sample_mapping"], dtype=np.int64)
        first_rows = np.flatnonzero(np.diff(sample, prepend=-1) != 0)
        truncated = np.bincount(sample, minlength=n) > 1
        lengths = np.asarray(enc["length"], dtype=np.int64)[first_rows]

        # Longest first: batches of similar lengths waste little on padding, and an
        # out-of-memory error, if any, shows up on the first batch.
        order = np.argsort(-lengths, kind="stable")
        sorted_lengths = lengths[order]
        ids = enc["input_ids"]
        flat = np.fromiter(
            itertools.chain.from_iterable(ids[r] for r in first_rows[order]),
            dtype=np.int64,
            count=int(sorted_lengths.sum()),
        )
        offsets = np.concatenate(([0], np.cumsum(sorted_lengths)))

        out = np.empty((n, self.dim), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, n, bs):
                stop = min(start + bs, n)
                batch_lengths = sorted_lengths[start:stop]
                width = int(batch_lengths[0])
                # Right padding keeps the CLS token at position 0 and position ids unchanged.
                mask = np.arange(width) < batch_lengths[:, None]
                batch_ids = np.full(mask.shape, self._pad_id, dtype=np.int64)
                batch_ids[mask] = flat[offsets[start] : offsets[stop]]
                attention = mask.astype(np.int64)
                hidden = torch.as_tensor(self._forward(batch_ids, attention))
                vectors = self._pool(hidden, torch.from_numpy(attention).to(hidden.device))
                out[order[start:stop]] = vectors.cpu().numpy()
        return out, truncated

    def _pool(self, hidden: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
        # Pool and normalise in float32 whatever the compute dtype: half-precision
        # sums over long passages lose digits the index would keep.
        hidden = hidden.float()
        if self.pooling == "cls":
            vectors = hidden[:, 0]
        else:
            weights = attention.unsqueeze(-1).to(hidden.dtype)
            vectors = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
        if self.normalize:
            vectors = torch.nn.functional.normalize(vectors, p=2, dim=1)
        return vectors


def _torch_forward(
    model: torch.nn.Module, device: str, ids: np.ndarray, mask: np.ndarray
) -> torch.Tensor:
    return model(
        input_ids=torch.from_numpy(ids).to(device), attention_mask=torch.from_numpy(mask).to(device)
    )[0]


def _check_length(name: str, value: int, floor: int, limit: int) -> int:
    value = _positive_int(name, value)
    if value < floor:
        raise ValueError(f"{name}={value} leaves no room for text; use at least {floor}")
    if value > limit:
        raise ValueError(f"{name}={value} exceeds the model's limit of {limit} tokens")
    return value


def _positive_int(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def valid_unicode(text: str) -> str:
    """The text as valid Unicode: surrogate halves (from `\\ud83d` escapes, say) paired into their
    character where they form one, else each replaced by U+FFFD. The tokenizer takes nothing else.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


def _choice(name: str, value: str, valid: Sequence[str]) -> str:
    if value not in valid:
        raise ValueError(f"unknown {name} {value!r}; choose one of: {', '.join(valid)}")
    return value


def _onnx_device(device: str) -> str:
    if device in ("auto", "cpu"):
        return "cpu"
    if not (device == "mps" or re.fullmatch(r"cuda(:\d+)?", device or "")):
        raise ValueError(f"unknown device {device!r}; choose one of: {', '.join(DEVICES)}")
    raise ValueError(
        f"runtime 'onnx' runs on the CPU; use device='cpu' (or 'auto') with it, "
        f"or runtime='torch' on {device!r}"
    )


def _onnx_dtype(dtype: str) -> torch.dtype:
    if dtype not in TORCH_DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of: {', '.join(DTYPES)}")
    if dtype not in ("auto", "float32"):
        raise ValueError(
            f"runtime 'onnx' computes in float32 (int8 weights with quantize='int8'); "
            f"use dtype='float32' (or 'auto'), or runtime='torch' for {dtype!r}"
        )
    return torch.float32


def _parse_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return device
    if re.fullmatch(r"cuda(:\d+)?", device or ""):
        if not torch.cuda.is_available():
            raise BadInput(
                f"Device {device!r} was asked for, but torch sees no CUDA device here: "
                "use --device cpu (or auto, which takes CUDA when there is one)."
            )
        return device
    if device == "mps":
        if not torch.backends.mps.is_available():
            raise BadInput(
                "Device 'mps' was asked for, but torch sees no Apple GPU here: use --device cpu."
            )
        return device
    raise ValueError(f"unknown device {device!r}; choose one of: {', '.join(DEVICES)}")


def _parse_dtype(dtype: str, device: str) -> torch.dtype:
    if dtype not in TORCH_DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of: {', '.join(DTYPES)}")
    chosen = TORCH_DTYPES[dtype]
    if chosen is None:
        return torch.float16 if device.startswith("cuda") else torch.float32
    return chosen
