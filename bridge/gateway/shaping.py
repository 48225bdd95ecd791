"""The gateway's own answers shaped as the cluster shapes its answers: `filter_path` (with `*`
and `**`, and `-` exclusions), `format=yaml`, `pretty`, and the cluster's Content-Type."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from bridge.gateway import jsoncodec

JSON_TYPE = "application/json; charset=UTF-8"
YAML_TYPE = "application/yaml"
_MISSING = object()


def truthy(params: Mapping[str, str], name: str) -> bool:
    """A boolean query-string flag as OpenSearch reads it: present and not `false`."""
    return name in params and params[name].lower() not in ("false", "0", "no")


@lru_cache(maxsize=256)
def _pattern(segment: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in segment.split("*")))


def _next(key: str, paths: list[list[str]]) -> list[list[str]]:
    """What remains of each path below `key` (an empty rest: the path ends here)."""
    out: list[list[str]] = []
    for path in paths:
        head = path[0]
        if head == "**":
            if len(path) == 1:
                out.append([])
                continue
            out.append(path)  # `**` takes this level too
            if _pattern(path[1]).fullmatch(key):
                out.append(path[2:])
        elif _pattern(head).fullmatch(key):
            out.append(path[1:])
    return out


def _include(node: Any, paths: list[list[str]]) -> Any:
    if any(not path for path in paths):
        return node
    if isinstance(node, list):
        kept = [v for v in (_include(item, paths) for item in node) if v is not _MISSING]
        return kept if kept else _MISSING
    if not isinstance(node, dict):
        return _MISSING
    out = {}
    for key, value in node.items():
        rest = _next(key, paths)
        if rest:
            child = _include(value, rest)
            if child is not _MISSING:
                out[key] = child
    return out if out else _MISSING


def _exclude(node: Any, paths: list[list[str]]) -> Any:
    if isinstance(node, list):
        return [_exclude(item, paths) for item in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        rest = _next(key, paths)
        if any(not path for path in rest):
            continue
        out[key] = _exclude(value, rest) if rest else value
    return out


def filter_path(body: Any, spec: str) -> Any:
    """The body with only the paths `spec` names (comma-separated; `-path` removes one)."""
    parts = [p.strip() for p in spec.split(",") if p.strip()]
    includes = [p.split(".") for p in parts if not p.startswith("-")]
    excludes = [p[1:].split(".") for p in parts if p.startswith("-") and len(p) > 1]
    out = body
    if includes:
        out = _include(body, includes)
        if out is _MISSING:
            out = {}
    if excludes:
        out = _exclude(out, excludes)
    return out


def render(body: Any, params: Mapping[str, str] | None) -> tuple[bytes, str]:
    """(bytes, Content-Type) of an answer as the caller's query string asks for it."""
    params = params or {}
    if "filter_path" in params:
        body = filter_path(body, params["filter_path"])
    if params.get("format", "").lower() == "yaml":
        import yaml

        return yaml.safe_dump(body, sort_keys=False, explicit_start=True).encode(), YAML_TYPE
    if truthy(params, "pretty"):
        return json.dumps(body, indent=2).encode() + b"\n", JSON_TYPE
    return jsoncodec.dumps(body), JSON_TYPE
