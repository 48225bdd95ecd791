"""Loading a checkpoint: config, fast tokenizer, weights, and what its sentence-transformers
files say about pooling, normalising and length. Shared by every runtime."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path
from typing import Any

from bridge.config import SEED_MODEL

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


class OnnxUnavailable(ModelLoadError):
    """runtime='onnx' was asked for, but the optional ONNX packages are not installed."""


def load_config_and_tokenizer(model_id: str) -> tuple[Any, Any]:
    """The config (checked to be a BERT-like encoder) and the fast tokenizer; no weights."""
    from transformers import AutoConfig, AutoTokenizer

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
    except Exception as exc:
        raise ModelLoadError(_load_failure(model_id, exc)) from exc
    if not getattr(tokenizer, "is_fast", False):
        raise ModelLoadError(
            f"Model {model_id!r} has no fast tokenizer; add a tokenizer.json to the model "
            "directory (save it with a fast tokenizer) and pass --model DIR."
        )
    return config, tokenizer


def load_weights(model_id: str, **kwargs: Any) -> Any:
    """The torch model (float32, CPU, eval mode); kwargs go to `from_pretrained`."""
    from transformers import AutoModel

    try:
        model = AutoModel.from_pretrained(model_id, **kwargs)
    except Exception as exc:
        raise ModelLoadError(_load_failure(model_id, exc)) from exc
    return model.eval()


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
        "pass --model DIR, or use the packaged all-MiniLM-L6-v2 offline with --model minilm."
    )


def model_folder(model_id: str) -> Path | None:
    """The local directory holding the checkpoint: the path itself, or its hub cache snapshot."""
    folder = Path(model_id).expanduser()
    if folder.is_dir():
        return folder
    try:
        from transformers.utils import cached_file

        return Path(cached_file(model_id, "config.json")).parent
    except Exception:  # loaded, so cached; a stranger layout just has no folder
        return None


def model_length_limit(config: Any, tokenizer: Any) -> int:
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


class STSettings:
    """What a sentence-transformers checkpoint says about pooling, normalising and length."""

    def __init__(self) -> None:
        self.pooling: str | None = None
        self.normalize = False
        self.max_seq_length: int | None = None


def sentence_transformers_settings(model_id: str) -> STSettings:
    settings = STSettings()
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
