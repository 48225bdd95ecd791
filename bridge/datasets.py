"""Where the evaluation collections are: one lookup for the tests, benchmarks, eval and the demo.

A collection NAME (a BEIR-format folder: corpus.jsonl, queries.jsonl, qrels/test.tsv) is found
in the first of:

1. `$DOTBRIDGE_DATASETS/NAME`;
2. `../shared/datasets/NAME`, beside the checkout (or beside the working directory);
3. dotbridge's cache, `$DOTBRIDGE_HOME/datasets/NAME`, which `dotbridge datasets fetch NAME`
   fills from the public BEIR archives (checksums verified, by pooch).

Standard library only at import: `make test` runs `python -m bridge.datasets check` before it
installs anything, so that a machine without the data hears so in one sentence, in seconds.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from bridge.home import base_dir

try:
    from bridge.errors import BadInput as _Refusal
except ImportError:  # run by `make test` before the install: click may be absent
    _Refusal = Exception  # type: ignore[assignment,misc]

ENV = "DOTBRIDGE_DATASETS"
CHECKOUT = Path(__file__).resolve().parents[1]
REQUIRED_FILES = ("corpus.jsonl", "queries.jsonl", "qrels/test.tsv")
BEIR_BASE = "https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets"
FOR_TESTS = ("scifact",)
"""What `make test` needs (the integration tests read SciFact passages and queries)."""


@dataclass(frozen=True)
class Archive:
    """A public zip that holds one collection in a folder of its name."""

    url: str
    md5: str  # BEIR publishes md5 sums beside its archives


PUBLIC: dict[str, Archive] = {
    "scifact": Archive(f"{BEIR_BASE}/scifact.zip", "5f7d1de60b170fc8027bb7898e2efca1"),
    "nfcorpus": Archive(f"{BEIR_BASE}/nfcorpus.zip", "a89dba18a62ef92f7d323ec890a0d38d"),
}
"""The BEIR collections `dotbridge datasets fetch` knows, with the md5 sums BEIR publishes."""

NOT_PUBLIC = {
    "trec-dl-2019-passage-subset": (
        "it is built, not downloaded (the union of five systems' top-100 MS MARCO passages for "
        "the 43 judged TREC DL 2019 queries, with NIST's qrels): copy such a folder into place"
    ),
}


class DatasetNotFound(_Refusal):  # type: ignore[valid-type,misc]
    """No copy of a collection in any of the three places."""


def cache_dir() -> Path:
    """Where `dotbridge datasets fetch` puts collections."""
    return base_dir() / "datasets"


def search_roots() -> list[tuple[str, Path]]:
    """The folders a collection is looked for in, in order, each with how it is named."""
    roots: list[tuple[str, Path]] = []
    if env := os.environ.get(ENV):
        roots.append((f"${ENV}", Path(env).expanduser()))
    for base in (CHECKOUT, Path.cwd()):
        shared = base.parent / "shared" / "datasets"
        if shared.is_dir() and all(shared.resolve() != r.resolve() for _, r in roots):
            roots.append(("../shared/datasets", shared))
    roots.append(("dotbridge's cache", cache_dir()))
    return roots


def is_collection(path: Path) -> bool:
    return all((path / name).is_file() for name in REQUIRED_FILES)


def find(name: str) -> Path | None:
    """The folder of collection `name`, or None when no copy is in any of the three places."""
    for _, root in search_roots():
        if is_collection(root / name):
            return root / name
    return None


def locate(name: str) -> Path:
    """The folder of collection `name`; DatasetNotFound names the three ways to provide it."""
    found = find(name)
    if found is None:
        raise DatasetNotFound(missing_sentence([name]))
    return found


def resolve(value: str | Path) -> Path:
    """A collection given as a folder, or by name (looked up the three ways)."""
    path = Path(value).expanduser()
    if path.is_dir():
        return path
    if path.name == str(value) and "/" not in str(value):
        return locate(str(value))
    raise DatasetNotFound(
        f"{value} is not a folder: give a BEIR folder (corpus.jsonl, queries.jsonl, "
        "qrels/test.tsv) or a collection's name such as scifact."
    )


def missing_sentence(names: Iterable[str]) -> str:
    names = list(names)
    what = ", ".join(names)
    fetchable = [n for n in names if n in PUBLIC]
    fetch = (
        f"run `dotbridge datasets fetch {' '.join(fetchable)}` (BEIR's public archives, "
        f"into {cache_dir()})"
        if fetchable
        else "copy it into dotbridge's cache at " + str(cache_dir())
    )
    return (
        f"No copy of the dataset {what} was found (each is a BEIR folder with corpus.jsonl, "
        f"queries.jsonl and qrels/test.tsv): set {ENV} to a folder that holds it, put it in "
        f"../shared/datasets beside the checkout, or {fetch}."
    )


def fetch(
    name: str,
    *,
    archive: Archive | None = None,
    progress: bool = False,
    say: Callable[[str], None] = lambda line: None,
) -> Path:
    """Download collection `name` into the cache (checksum verified) and return its folder.

    A copy already in the cache is kept. `archive` overrides where it comes from (a mirror).
    """
    if archive is None:
        if name in NOT_PUBLIC:
            raise DatasetNotFound(f"Dataset {name!r} cannot be fetched: {NOT_PUBLIC[name]}.")
        if name not in PUBLIC:
            known = ", ".join(sorted(PUBLIC))
            raise DatasetNotFound(
                f"Dataset {name!r} is not one dotbridge can fetch: choose {known}."
            )
        archive = PUBLIC[name]
    target = cache_dir() / name
    if is_collection(target):
        say(f"{name}: already in {target}")
        return target
    import pooch

    downloads = cache_dir() / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    say(f"{name}: downloading {archive.url}")
    try:
        zip_path = pooch.retrieve(
            archive.url,
            known_hash=f"md5:{archive.md5}",
            fname=f"{name}.zip",
            path=downloads,
            progressbar=progress,
        )
    except ValueError as exc:  # pooch: the download's hash is not the one published
        raise DatasetNotFound(
            f"The download of {name} from {archive.url} does not match its published md5 "
            f"{archive.md5}; nothing was kept: try again, or use another copy ({ENV})."
        ) from exc
    except OSError as exc:  # requests' failures are OSErrors too
        raise DatasetNotFound(
            f"Could not download {name} from {archive.url} ({type(exc).__name__}): check the "
            f"network, or put a copy in place another way ({ENV} or ../shared/datasets)."
        ) from exc
    _unpack(Path(zip_path), name, target)
    say(f"{name}: ready in {target}")
    return target


def fetch_named(
    name: str,
    *,
    mirror: str | None = None,
    progress: bool = False,
    say: Callable[[str], None] = lambda line: None,
) -> Path:
    """`dotbridge datasets fetch NAME [--from URL]`: a public collection, from BEIR or a mirror
    of the same archive (same md5)."""
    archive = None
    if mirror is not None and name in PUBLIC:
        archive = Archive(mirror, PUBLIC[name].md5)
    return fetch(name, archive=archive, progress=progress, say=say)


def describe_all() -> list[str]:
    """One line per known collection: where it is found, else how to get it."""
    lines = []
    for name in [*PUBLIC, *NOT_PUBLIC]:
        found = find(name)
        if found is not None:
            lines.append(f"{name}: {found}")
        elif name in PUBLIC:
            lines.append(f"{name}: not found; `dotbridge datasets fetch {name}`")
        else:
            lines.append(f"{name}: not found; {NOT_PUBLIC[name]}")
    where = ", ".join(f"{label} ({path})" for label, path in search_roots())
    lines.append(f"looked in, in order: {where}")
    return lines


def _unpack(zip_path: Path, name: str, target: Path) -> None:
    """The archive's NAME/ folder (corpus, queries, test qrels) moved into place whole."""
    import zipfile

    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        with zipfile.ZipFile(zip_path) as archive:
            members = [m for m in archive.namelist() if m.startswith(f"{name}/")]
            for member in members:
                if ".." in Path(member).parts:  # never write outside the folder
                    continue
                archive.extract(member, tmp)
        unpacked = Path(tmp) / name
        if not is_collection(unpacked):
            raise DatasetNotFound(
                f"The archive {zip_path} holds no {name}/ folder with "
                f"{', '.join(REQUIRED_FILES)}: delete it and fetch again."
            )
        if target.exists():
            shutil.rmtree(target)
        unpacked.rename(target)


def check(names: Iterable[str] = FOR_TESTS) -> str | None:
    """None when every collection is found, else the one sentence saying how to provide them."""
    missing = [name for name in names if find(name) is None]
    return missing_sentence(missing) if missing else None


def main(argv: list[str]) -> int:
    """`python -m bridge.datasets check [NAME ...]`: exit 1, with one sentence, when one is
    missing."""
    if argv[:1] != ["check"]:
        print("usage: python -m bridge.datasets check [NAME ...]", file=sys.stderr)
        return 2
    problem = check(argv[1:] or FOR_TESTS)
    if problem:
        print(problem, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
