"""Model fixtures: a tiny random DistilBERT saved once per session, and the packaged MiniLM."""

from __future__ import annotations

import os

# huggingface_hub reads the flag once, at import: set it before anything imports it, so a
# test that misses a local file fails at once instead of retrying the network for ~30 s.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# As `dotbridge` does before transformers loads: no "Loading weights" bars in CLI output.
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from bridge.config import minilm_model_dir  # noqa: E402


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return minilm_model_dir()


def build_tiny_model(path: Path, tokenizer_dir: Path) -> Path:
    """Save a seeded, randomly initialised 2-layer DistilBERT with the bert-base-uncased vocabulary.

    The tokenizer is saved as a DistilBERT tokenizer, as in the seed checkpoint, so that
    `model(**tokenizer(...))` works (DistilBERT takes no token_type_ids).
    """
    import torch
    from transformers import DistilBertConfig, DistilBertModel, DistilBertTokenizer

    tokenizer = DistilBertTokenizer.from_pretrained(tokenizer_dir)
    config = DistilBertConfig(
        vocab_size=len(tokenizer),
        dim=32,
        n_layers=2,
        n_heads=2,
        hidden_dim=64,
        max_position_embeddings=512,
    )
    torch.manual_seed(0)
    model = DistilBertModel(config).eval()
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory, minilm_dir: Path) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-distilbert"), minilm_dir)


@pytest.fixture(scope="session")
def tiny_encoder(tiny_model_dir: Path):
    from bridge.encoder import Encoder

    return Encoder(tiny_model_dir, device="cpu")
