"""The README's main job: node, ingest, a query in every mode; the fallback is the demo's."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from bridge.cli import main
from bridge.demo import BUILTIN_PASSAGES, choose_model
from bridge.encoder import ModelLoadError

pytestmark = pytest.mark.integration


def test_demo_runs_every_mode_with_the_fallback_model(opensearch_settings, os_client, tmp_path):
    env = {
        "OPENSEARCH_URL": opensearch_settings.url,
        "DOTBRIDGE_DEMO_CORPUS": str(tmp_path / "absent.jsonl"),  # use the built-in passages
        "DOTBRIDGE_HOME": str(tmp_path / "home"),
        "HF_HUB_OFFLINE": "1",
    }
    try:
        result = CliRunner().invoke(
            main, ["demo", "--query", "what is the transformers library", "-k", "3"], env=env
        )
        assert result.exit_code == 0, result.output
        out = result.output
        assert "cannot be loaded here" in out and "all-MiniLM-L6-v2" in out
        n = len(BUILTIN_PASSAGES)
        # The story tells what is ingested: all 6 passages, not "the first 500 records".
        assert f"Ingesting the {n} built-in sample passages into" in out
        assert f"read {n}, indexed {n}, rejected 0" in out
        for mode in ("bm25", "rerank", "knn", "hybrid"):
            assert f"\n{mode}: 'what is the transformers library'" in out
        # The Transformers passage is in the top 3 of each dense mode for this query.
        dense = out.split("\nrerank:")[1].split("\nknn:")
        dense = [dense[0], *dense[1].split("\nhybrid:")]
        assert all("seed-relevant" in section for section in dense)
    finally:
        os_client.indices.delete(index="dotbridge-demo-minilm", ignore_unavailable=True)


def test_a_named_model_is_never_replaced(tmp_path):
    with pytest.raises(ModelLoadError):
        choose_model(str(tmp_path / "no-such-model"), device="cpu")
