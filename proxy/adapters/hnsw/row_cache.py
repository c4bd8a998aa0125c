"""The rows (id, version, metadata) of recently returned labels, kept in memory so a search reads SQLite only
for labels it has not returned lately."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable

from proxy.core.model import Metadata

# Rows of recently returned labels kept in memory (about 250 bytes each without text).
DEFAULT_ROW_CACHE = 100_000

CachedRow = tuple[str, int, Metadata]
"""(id, version, metadata) of a live label."""


class RowCache:
    """Recently returned rows by label, least recently used evicted first, also found by document id.

    Readers fill it while holding the graph's shared lock and commits empty it for the labels they change
    while holding the exclusive one, so a row read before a commit can never be stored after it. The
    metadata dicts are shared with the hits built from them: callers treat hit metadata as read-only.
    """

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._rows: OrderedDict[int, CachedRow] = OrderedDict()
        self._labels: dict[str, int] = {}
        self._lock = threading.Lock()

    def get_many(self, labels: Iterable[int]) -> dict[int, CachedRow]:
        found: dict[int, CachedRow] = {}
        with self._lock:
            for label in labels:
                row = self._rows.get(label)
                if row is not None:
                    self._rows.move_to_end(label)
                    found[label] = row
        return found

    def versions(self, ids: Iterable[str]) -> dict[str, int]:
        """Cached live versions among `ids`; an id absent here may still be in the index, live or deleted."""
        found: dict[str, int] = {}
        with self._lock:
            for doc_id in ids:
                label = self._labels.get(doc_id)
                if label is not None:
                    self._rows.move_to_end(label)
                    found[doc_id] = self._rows[label][1]
        return found

    def put(self, label: int, row: CachedRow) -> None:
        if self._capacity <= 0:
            return
        with self._lock:
            self._rows[label] = row
            self._labels[row[0]] = label
            if len(self._rows) > self._capacity:
                self._forget(*self._rows.popitem(last=False))

    def drop(self, labels: Iterable[int]) -> None:
        with self._lock:
            for label in labels:
                row = self._rows.pop(label, None)
                if row is not None:
                    self._forget(label, row)

    def _forget(self, label: int, row: CachedRow) -> None:
        if self._labels.get(row[0]) == label:
            del self._labels[row[0]]

    def __len__(self) -> int:
        return len(self._rows)
