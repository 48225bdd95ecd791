"""Index bodies built by pure functions; imports nothing else of dotbridge."""

from __future__ import annotations

from enum import Enum


class Similarity(str, Enum):
    """How relevance is scored; one value drives the mapping, the query and the score conversion."""

    DOT = "dot"
    COSINE = "cosine"

    @property
    def space_type(self) -> str:
        return {"dot": "innerproduct", "cosine": "cosinesimil"}[self.value]

    @classmethod
    def parse(cls, value: str | Similarity) -> Similarity:
        try:
            return cls(value)
        except ValueError:
            valid = ", ".join(s.value for s in cls)
            raise ValueError(f"unknown similarity {value!r}; choose one of: {valid}") from None
