"""Writes an application made directly to a table served in place, carried into the new model's index.

The table's trigger lists every row inserted, deleted or whose text changed (`ChangeFeed`). Each round takes
the oldest pending changes: a deletion becomes a tombstone at the change's version, anything else is read
back from the table as it is now and embedded, unless the new index already holds that version (the backfill
or a lazy move got there first). A change is settled only at the version it was read at, so a row written
again meanwhile stays pending and is done again; version compare-and-set keeps the order right whatever
finishes first.
"""

from __future__ import annotations

from collections.abc import Sequence

from proxy.core.binding import IndexBinding
from proxy.core.ports import Change, ChangeFeed
from proxy.migration.records import embed_records, needing_reembed


class ChangeFollower:
    def __init__(self, feed: ChangeFeed, source: IndexBinding, target: IndexBinding) -> None:
        self._feed = feed
        self._source = source
        self._target = target

    def step(self, limit: int) -> tuple[int, int]:
        """Settles up to `limit` pending changes; returns (changes settled or retried, documents written)."""
        changes = self._feed.pending_changes(limit)
        if not changes:
            return 0, 0
        written = self._tombstone([c for c in changes if c.deleted])
        written += self._reembed([c for c in changes if not c.deleted])
        self._feed.settle(changes)
        return len(changes), written

    def pending(self) -> int:
        return self._feed.pending_count()

    def _tombstone(self, deleted: Sequence[Change]) -> int:
        # One call per version: `delete` tombstones a batch at one version, and each deletion has its own.
        return sum(len(self._target.index.delete([c.id], c.version).written) for c in deleted)

    def _reembed(self, changed: Sequence[Change]) -> int:
        if not changed:
            return 0
        docs = needing_reembed(self._source.index.get([c.id for c in changed]), self._target.index)
        if not docs:
            return 0
        return len(self._target.index.upsert(embed_records(docs, self._target.embedder)).written)
