"""A hit's identity in a staged answer: `_id` and `_index` together, so that a target over
several indexes never conflates two documents that share an `_id` (pure functions)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

SEP = "\x00"  # sorts below every character: keys order as their ids do


def hit_key(hit: Mapping[str, Any]) -> str:
    return f"{hit['_id']}{SEP}{hit.get('_index', '')}"


def key_id(key: str) -> str:
    return key.split(SEP, 1)[0]


def only(keys: Iterable[str]) -> dict:
    """A filter matching exactly these (id, index) pairs."""
    by_index: dict[str, list[str]] = {}
    for key in dict.fromkeys(keys):
        doc_id, _, index = key.partition(SEP)
        by_index.setdefault(index, []).append(doc_id)
    clauses = []
    for index, ids in by_index.items():
        match: dict = {"ids": {"values": ids}}
        if index:
            match = {"bool": {"filter": [{"term": {"_index": index}}, match]}}
        clauses.append(match)
    if len(clauses) == 1:
        return clauses[0]
    return {"bool": {"should": clauses, "minimum_should_match": 1}}


def restricted(query: dict, keys: Iterable[str]) -> dict:
    """The query, its scores unchanged, over exactly these (id, index) pairs."""
    return {"bool": {"must": [query], "filter": [only(keys)]}}
