"""Bi-encoder: turns queries and passages into float32 vectors; knows nothing of OpenSearch."""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bridge.config import DEVICES, DTYPES, POOLINGS, SEED_MODEL
from bridge.errors import BadInput
from mappings import Similarity

# "auto" maps to None: float16 on CUDA, else float32.
TORCH_DTYPES = {name: None if name == "auto" else getattr(torch, name) for name in DTYPES}

# An allowlist rather than a denylist: a plain GPT2Config has neither is_decoder nor
# architectures set, so only the model type reliably tells an encoder from a decoder.
ENCODER_MODEL_TYPES = frozenset(
    {
        "albert",
        "bert",
        "camembert",
        "convbert",
        "data2vec-text",
        "deberta",
        "deberta-v2",
        "distilbert",
        "electra",
        "ernie",
        "ibert",
        "megatron-bert",
        "mobilebert",
        "modernbert",
        "mpnet",
        "nezha",
        "rembert",
        "roberta",
        "roberta-prelayernorm",
        "roformer",
        "squeezebert",
        "xlm-roberta",
        "xlm-roberta-xl",
        "xmod",
    }
)

# RoBERTa-style position ids start after the padding index, so the last
# pad_token_id + 1 position embeddings can never be used by real tokens.
_OFFSET_POSITION_TYPES = frozenset(
    {
        "camembert",
        "data2vec-text",
        "roberta",
        "roberta-prelayernorm",
        "xlm-roberta",
        "xlm-roberta-xl",
        "xmod",
    }
)

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


class ModelLoadError(Exception):
    """The model or its tokenizer could not be loaded, or it is not a BERT-like encoder."""


class Encoder:
    """A BERT-like encoder with CLS or mean pooling, scored by dot product or cosine."""

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
    ) -> None:
        # Validate every choice before the (slow) load so a typo fails at once.
        if pooling is not None and pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r}; choose one of: {', '.join(POOLINGS)}")
        sim = Similarity.parse(similarity) if similarity is not None else None
        self.device = _parse_device(device)
        torch_dtype = _parse_dtype(dtype, self.device)
        self.batch_size = _positive_int("batch_size", batch_size)

        self.model_id = str(model)
        self.config, self.tokenizer, self.model = _load(self.model_id)
        self.model.to(device=self.device, dtype=torch_dtype)
        self.model.eval()
        self.dtype = str(torch_dtype).removeprefix("torch.")
        self.dim = int(self.config.hidden_size)
        self._pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0

        st = _sentence_transformers_settings(self.model_id)
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

        limit = _model_length_limit(self.config, self.tokenizer)
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

    @functools.cached_property
    def fingerprint(self) -> str | None:
        """SHA-256 of the weight files: the same checkpoint, wherever it was loaded from.

        Indexes record it, so that a local copy of a hub model (or the same package in another
        virtualenv) counts as the model that made the vectors. None when no file is found.
        """
        folder = Path(self.model_id).expanduser()
        if not folder.is_dir():
            try:
                from transformers.utils import cached_file

                folder = Path(cached_file(self.model_id, "config.json")).parent
            except Exception:  # loaded, so cached; a stranger layout just has no fingerprint
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
                input_ids = torch.from_numpy(batch_ids).to(self.device)
                attention = torch.from_numpy(mask.astype(np.int64)).to(self.device)
                hidden = self.model(input_ids=input_ids, attention_mask=attention)[0]
                vectors = self._pool(hidden, attention)
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


def valid_unicode(text: str) -> str:
    """The text as valid Unicode: surrogate halves (from `\\ud83d` escapes, say) paired into their
    character where they form one, else each replaced by U+FFFD. The tokenizer takes nothing else.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


class _STSettings:
    """What a sentence-transformers checkpoint says about pooling, normalising and length."""

    def __init__(self) -> None:
        self.pooling: str | None = None
        self.normalize = False
        self.max_seq_length: int | None = None


def _sentence_transformers_settings(model_id: str) -> _STSettings:
    settings = _STSettings()
    modules = _read_json(model_id, "modules.json")
    if isinstance(modules, list):
        for module in modules:
            kind = str(module.get("type", "")).rsplit(".", 1)[-1]
            if kind == "Pooling":
                path = module.get("path", "")
                config = _read_json(model_id, f"{path}/config.json" if path else "config.json")
                settings.pooling = _pooling_from_config(config or {})
            elif kind == "Normalize":
                settings.normalize = True
            elif kind != "Transformer":
                warnings.warn(
                    f"model {model_id!r} has a sentence-transformers {kind} module that this "
                    "encoder does not apply; its vectors will differ from sentence-transformers'",
                    stacklevel=3,
                )
    st_config = _read_json(model_id, "sentence_bert_config.json")
    if isinstance(st_config, dict) and isinstance(st_config.get("max_seq_length"), int):
        settings.max_seq_length = st_config["max_seq_length"]
    return settings


def _pooling_from_config(config: dict[str, Any]) -> str | None:
    if config.get("pooling_mode_cls_token"):
        return "cls"
    if config.get("pooling_mode_mean_tokens"):
        return "mean"
    for key, value in config.items():
        if key.startswith("pooling_mode_") and value is True:
            return key.removeprefix("pooling_mode_")
    return None


def _read_json(model_id: str, filename: str) -> Any:
    """A JSON file of a local model directory or of the hub snapshot; None when absent."""
    local = Path(model_id).expanduser()
    if local.is_dir():
        path = local / filename
    else:
        try:
            from huggingface_hub import hf_hub_download

            path = Path(hf_hub_download(model_id, filename))
        except Exception:  # absent from the repository, or offline and not cached
            return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _load(model_id: str) -> tuple[Any, Any, torch.nn.Module]:
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    try:
        config = AutoConfig.from_pretrained(model_id)
    except Exception as exc:
        raise ModelLoadError(_load_failure(model_id, exc)) from exc
    model_type = getattr(config, "model_type", None)
    if (
        model_type not in ENCODER_MODEL_TYPES
        or getattr(config, "is_encoder_decoder", False)
        or getattr(config, "is_decoder", False)
    ):
        raise ModelLoadError(
            f"Model {model_id!r} is a {model_type!r} model, not a BERT-like encoder; "
            f"pass --model with an encoder checkpoint (model_type one of "
            f"{', '.join(sorted(ENCODER_MODEL_TYPES))}), e.g. {SEED_MODEL}."
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_id)
        model = AutoModel.from_pretrained(model_id)
    except Exception as exc:
        raise ModelLoadError(_load_failure(model_id, exc)) from exc
    if not getattr(tokenizer, "is_fast", False):
        raise ModelLoadError(
            f"Model {model_id!r} has no fast tokenizer; add a tokenizer.json to the model "
            "directory (save it with a fast tokenizer) and pass --model DIR."
        )
    return config, tokenizer, model


def _load_failure(model_id: str, exc: Exception) -> str:
    local = Path(model_id).expanduser()
    reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if local.is_dir():
        return (
            f"Could not load model from directory {model_id!r} ({reason}); it must hold "
            "config.json, the tokenizer files and the weights, as written by "
            "`hf download ID --local-dir DIR`."
        )
    if not _HUB_ID.match(model_id) or local.is_absolute() or model_id.startswith(("~", ".")):
        return (
            f"Could not load model {model_id!r}: no such directory; pass --model DIR with a "
            "local copy made by `hf download ID --local-dir DIR`."
        )
    return (
        f"Could not load model {model_id!r} (offline or unknown id): download it once with "
        f"`hf download {model_id} --local-dir DIR` on a machine with internet and "
        "pass --model DIR."
    )


def _model_length_limit(config: Any, tokenizer: Any) -> int:
    limits = []
    # Tokenizers without a recorded limit report a huge sentinel (int(1e30)).
    tok_limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(tok_limit, int) and tok_limit < 1_000_000:
        limits.append(tok_limit)
    positions = getattr(config, "max_position_embeddings", None)
    if isinstance(positions, int) and positions > 0:
        if getattr(config, "model_type", None) in _OFFSET_POSITION_TYPES:
            positions -= (getattr(config, "pad_token_id", None) or 0) + 1
        limits.append(positions)
    return min(limits) if limits else 512


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
        raise ValueError(f"unknown dtype {dtype!r}; choose one of: {', '.join(TORCH_DTYPES)}")
    chosen = TORCH_DTYPES[dtype]
    if chosen is None:
        return torch.float16 if device.startswith("cuda") else torch.float32
    return chosen


__all__ = ["SEED_MODEL", "Encoder", "ModelLoadError"]
