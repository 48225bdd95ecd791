"""Downloads from Maven Central (or DOTBRIDGE_MAVEN_URL), each file checked before it is kept.

A file is verified against the checksum published beside it (.sha512, else .sha1) and against
the SHA-512 that dotbridge pins for it, where one is pinned; a file with neither is refused.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import requests
from tqdm import tqdm

from bridge.errors import NodeError
from bridge.nodes.files import check_disk

MAVEN_URL = "https://repo1.maven.org/maven2"

# SHA-512 digests recorded from the artifacts on Maven Central (2026-11). The 3.5.0 server zip
# has no checksum beside it, so its pin is the only check; where one is published, both must agree.
PINNED_SHA512 = {
    "opensearch-3.5.0.zip": "ca4c739cb0457de59df464f8f01eafb962ba140c41a649d29a2f5306cb59b436"
    "d76742a8e710c1493f3a68080e5f55fe5f9bf929cc3b0a6e04c6f87061a2e2a3",
    "elasticsearch-8.19.21.zip": "cf6b0a93860d329937ae7f913ec5073b0c726c77639764b93fc83a304aa1dd9d"
    "4defcfa2849948eea3b0b47c2065f994908603939fc2a4774c9c4d868c5ec1dd",
}


@dataclass(frozen=True)
class Artifact:
    path: str  # below the Maven repository root

    @property
    def filename(self) -> str:
        return self.path.rsplit("/", 1)[1]


def repository_url(maven_url: str | None = None) -> str:
    """The repository to download from: the argument, DOTBRIDGE_MAVEN_URL, or Maven Central."""
    return (maven_url or os.environ.get("DOTBRIDGE_MAVEN_URL") or MAVEN_URL).rstrip("/")


def fetch(items: Iterable[Artifact], downloads: Path, maven_url: str | None = None) -> list[Path]:
    """Download what is not cached in `downloads` yet; a warm cache makes no request."""
    downloads.mkdir(parents=True, exist_ok=True)
    return [_fetch_one(artifact, downloads, maven_url) for artifact in items]


def _fetch_one(artifact: Artifact, downloads: Path, maven_url: str | None) -> Path:
    target = downloads / artifact.filename
    if target.exists():
        return target
    check_disk(downloads)
    url = f"{repository_url(maven_url)}/{artifact.path}"
    expected = expected_digests(url, artifact.filename)
    partial = target.with_suffix(target.suffix + ".part")
    digests = {algo: hashlib.new(algo) for algo in expected}
    try:
        with requests.get(url, stream=True, timeout=60) as resp:
            resp.raise_for_status()
            total = int(resp.headers.get("content-length", 0)) or None
            with (
                partial.open("wb") as out,
                tqdm(
                    total=total,
                    unit="B",
                    unit_scale=True,
                    desc=artifact.filename,
                    disable=None,
                    leave=False,
                ) as bar,
            ):
                for chunk in resp.iter_content(chunk_size=1 << 20):
                    out.write(chunk)
                    for d in digests.values():
                        d.update(chunk)
                    bar.update(len(chunk))
    except requests.RequestException as exc:
        partial.unlink(missing_ok=True)
        raise NodeError(
            f"Could not download {url} ({type(exc).__name__}): check the network or set "
            "DOTBRIDGE_MAVEN_URL to a reachable Maven mirror, or use OPENSEARCH_URL for an "
            "existing cluster."
        ) from exc
    for algo, want in expected.items():
        got = digests[algo].hexdigest()
        if got != want:
            partial.unlink(missing_ok=True)
            raise NodeError(
                f"{artifact.filename} does not match its {algo} checksum (got {got[:16]}..., "
                f"expected {want[:16]}...): the download is corrupt; run the command again."
            )
    partial.replace(target)
    return target


def expected_digests(url: str, filename: str) -> dict[str, str]:
    """The digests a download must match: the pinned SHA-512 and the published checksum."""
    expected: dict[str, str] = {}
    if pinned := PINNED_SHA512.get(filename):
        expected["sha512"] = pinned
    for algo in ("sha512", "sha1"):
        try:
            resp = requests.get(f"{url}.{algo}", timeout=30)
        except requests.RequestException as exc:
            raise NodeError(
                f"Could not download {url}.{algo} ({type(exc).__name__}): check the network "
                "or set DOTBRIDGE_MAVEN_URL to a reachable Maven mirror."
            ) from exc
        if resp.status_code == 200:
            published = resp.text.split()[0].strip().lower()
            if algo in expected and expected[algo] != published:
                raise NodeError(
                    f"The published {algo} of {filename} differs from the one dotbridge pins: "
                    "refusing to use it; report this."
                )
            expected[algo] = published
            break
    if not expected:
        raise NodeError(
            f"No checksum is published beside {url}: dotbridge will not use an unchecked "
            "download; choose another --version."
        )
    return expected
