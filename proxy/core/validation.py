"""Request checks that run before anything is written, so a rejected batch writes nothing."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from proxy.core.errors import InvalidArgument
from proxy.core.model import DocumentInput, Vector

MAX_ID_CHARS = 512


def check_batch_size(count: int, limit: int, what: str) -> None:
    if count == 0:
        raise InvalidArgument(f"{what}: the batch is empty; send at least one item")
    if count > limit:
        raise InvalidArgument(
            f"{what}: batch of {count} exceeds the limit of {limit} (server.max_batch_size); split it"
        )


def check_ids(ids: Sequence[str], what: str) -> None:
    seen: set[str] = set()
    for position, doc_id in enumerate(ids):
        if not doc_id:
            raise InvalidArgument(f"{what}[{position}].id is empty; every document needs an id")
        if len(doc_id) > MAX_ID_CHARS:
            raise InvalidArgument(f"{what}[{position}].id is longer than {MAX_ID_CHARS} characters")
        if doc_id in seen:
            raise InvalidArgument(f"{what}: id {doc_id!r} appears twice in one batch; send each id once")
        seen.add(doc_id)


def check_vector(values: Sequence[float], model: str, dims: Mapping[str, int], where: str) -> Vector:
    """Validates a caller-supplied vector against the dimension of the model it claims to come from."""
    if not model:
        raise InvalidArgument(f"{where}.model is empty; name the model the vector came from ({_known(dims)})")
    if model not in dims:
        raise InvalidArgument(f"{where}.model {model!r} is not a configured model; known: {_known(dims)}")
    vector = np.asarray(values, dtype=np.float32)
    if vector.shape != (dims[model],):
        raise InvalidArgument(
            f"{where} has {vector.size} dimensions but model {model!r} produces {dims[model]}"
        )
    # The array methods, not np.all/np.any: those add a Python-level dispatch on every query.
    if not np.isfinite(vector).all():
        raise InvalidArgument(f"{where} contains NaN or infinite values")
    if not vector.any():
        raise InvalidArgument(f"{where} is all zeros; it has no direction to search by")
    return vector


def check_documents(
    documents: Sequence[DocumentInput], max_batch: int, max_text_chars: int, dims: Mapping[str, int]
) -> None:
    check_batch_size(len(documents), max_batch, "documents")
    check_ids([d.id for d in documents], "documents")
    for position, doc in enumerate(documents):
        where = f"documents[{position}] (id {doc.id!r})"
        if not doc.text.strip():
            # Text is what a migration re-embeds; a document without it could never move to a new model.
            raise InvalidArgument(
                f"{where}: text is empty; every document needs text so it can be re-embedded"
            )
        if len(doc.text) > max_text_chars:
            raise InvalidArgument(
                f"{where}: text has {len(doc.text)} characters, over server.max_text_chars={max_text_chars}"
            )


def check_k(k: int, max_k: int) -> None:
    if k <= 0:
        raise InvalidArgument(f"k must be at least 1, got {k}")
    if k > max_k:
        raise InvalidArgument(f"k={k} exceeds the limit of {max_k} (server.max_k)")


def _known(dims: Mapping[str, int]) -> str:
    return ", ".join(f"{name} ({dim} dims)" for name, dim in sorted(dims.items()))
