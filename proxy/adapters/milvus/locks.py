"""Per-id write serialization: Milvus has no conditional write, so the version check is read, then upsert.

Both steps run while this process holds the ids' stripes, so two writers of one id in this process take turns
and the second sees the first's version. The stripes are shared by every index object of one collection in
the process (a hot reload opens a second one before closing the first), never across processes.
"""

from __future__ import annotations

import threading
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

_STRIPES = 256
_registry: dict[tuple[str, str], list[threading.Lock]] = {}
_registry_lock = threading.Lock()


def collection_stripes(uri: str, collection: str) -> list[threading.Lock]:
    """The stripes of one collection (one list per URI and collection name in this process)."""
    with _registry_lock:
        return _registry.setdefault((uri, collection), [threading.Lock() for _ in range(_STRIPES)])


@contextmanager
def holding(stripes: list[threading.Lock], ids: Iterable[str]) -> Iterator[None]:
    """Holds the stripes of `ids`, taken in ascending stripe order so that two batches cannot deadlock."""
    wanted = sorted({zlib.crc32(doc_id.encode()) % len(stripes) for doc_id in ids})
    taken: list[threading.Lock] = []
    try:
        for position in wanted:
            stripes[position].acquire()
            taken.append(stripes[position])
        yield
    finally:
        for lock in reversed(taken):
            lock.release()
