"""Milvus boolean expressions built from values: every string goes in as a quoted literal.

milvus-lite 3.2 does not parse expression templates (`{name}` with `filter_params`), so values are quoted
here: a JSON string literal, which Milvus's parser reads with the same escapes (quotes, backslashes, control
characters and \\u sequences), so an id or metadata value can never end the literal early.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from proxy.core.model import Metadata

LIVE = "deleted == false"


def literal(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def id_in(field: str, ids: Sequence[str]) -> str:
    return f"{field} in [{', '.join(literal(i) for i in ids)}]"


def metadata_matches(field: str, where: Metadata | None) -> list[str]:
    """One equality per pair on the JSON field; a document without the key does not match."""
    return [f"{field}[{literal(key)}] == {literal(value)}" for key, value in sorted((where or {}).items())]


def all_of(*terms: str) -> str:
    return " and ".join(term for term in terms if term)
