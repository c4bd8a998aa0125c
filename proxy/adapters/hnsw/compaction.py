"""Online compaction: giving back the space deleted documents hold, beside searches and writes.

A delete leaves a tombstone row (id, version, no text, metadata or vector) for the version check, and only
marks the element deleted in the graph, so neither file shrinks by itself. Compaction
  1. builds a new graph from the rows live as of one write sequence, beside searches and writes (both graphs
     are in memory meanwhile); then, holding the write lock, replays the rows written after that sequence into
     it, swaps it in (searches wait for the swap only) and saves it like a flush (`HnswIndex.compact`);
  2. moves every SQLite row to the end of its table, one short transaction per chunk. A tombstone is an update
     that shrinks its row in place, and SQLite merges pages only when a delete leaves one under a third full,
     so pages that lost half their bytes stay allocated until their rows are written anew, densely. Writes
     wait for one chunk at most, and the extra disk is about one chunk, where a VACUUM would need a temporary
     copy of the live data and a second one in the WAL;
  3. gives the free pages back to the file system (auto_vacuum=INCREMENTAL, set when the database is created;
     a database created before that is converted once by a full VACUUM, which blocks writes while it rewrites
     the file) and truncates the WAL.
It costs about one write of the live data, so it is worth running when the dead fraction is large.
"""

from __future__ import annotations

import threading

from proxy.adapters.hnsw.store import INSERT_ROW, ROW_COLUMNS, DocumentStore

# Compaction moves this many rows, or frees this many pages, per write transaction: it bounds how long a write
# waits behind compaction, and how much the files grow before the pages a chunk frees are reused.
_REPACK_ROWS = 1_000
_VACUUM_PAGES = 2_048
_AUTO_VACUUM_INCREMENTAL = 2


def dead_fraction(element_count: int, live_count: int) -> float:
    """Share of a graph's `element_count` elements that belong to deleted documents, given `live_count`."""
    if element_count == 0:
        return 0.0
    # Every live row has exactly one element, so the rest are deleted; the counts are read without a lock,
    # hence the clamp.
    return min(1.0, max(0.0, (element_count - live_count) / element_count))


def compact_database(store: DocumentStore, write_lock: threading.Lock) -> None:
    """Steps 2 and 3 above; each step takes `write_lock`, the index's, for one short transaction at a time."""
    if _auto_vacuum_mode(store, write_lock) == _AUTO_VACUUM_INCREMENTAL:
        _repack_rows(store, write_lock)
    else:
        _convert_to_incremental_vacuum(store, write_lock)
    _release_free_pages(store, write_lock)
    with write_lock:
        store.ensure_open()
        store.checkpoint()


def _auto_vacuum_mode(store: DocumentStore, write_lock: threading.Lock) -> int:
    with write_lock:
        store.ensure_open()
        return int(store.writer.execute("PRAGMA auto_vacuum").fetchone()[0])


def _convert_to_incremental_vacuum(store: DocumentStore, write_lock: threading.Lock) -> None:
    # A database created before auto_vacuum was set can only change mode by a VACUUM, which rewrites the whole
    # file: writes wait until it ends, and it needs disk for a temporary copy of the live data plus that copy
    # in the WAL. Searches go on reading their snapshots. It happens once per database.
    with write_lock:
        store.ensure_open()
        store.writer.execute("PRAGMA auto_vacuum = INCREMENTAL")
        store.writer.execute("VACUUM")


def _repack_rows(store: DocumentStore, write_lock: threading.Lock) -> None:
    """Deletes and re-inserts every row present now, in chunks, so SQLite frees the half-empty pages.

    Re-inserted rows get new rowids past the end of the table, so they fill fresh pages densely, reusing the
    pages the previous chunk freed. Content, labels and sequences do not change: searches, the graph and
    the replay on open never notice.
    """
    with write_lock:
        store.ensure_open()
        (last,) = store.writer.execute("SELECT COALESCE(MAX(rowid), 0) FROM documents").fetchone()
    done = 0
    while done < last:
        with write_lock:
            store.ensure_open()
            done = _repack_chunk(store, done, last)
            store.checkpoint_if_wal_is_large()


def _repack_chunk(store: DocumentStore, after: int, last: int) -> int:
    """Moves the rows with after < rowid <= last, up to a chunk of them; returns the last rowid moved."""
    with store.transaction() as conn:
        rows = conn.execute(
            f"SELECT rowid, {ROW_COLUMNS} FROM documents WHERE rowid > ? AND rowid <= ? ORDER BY rowid LIMIT ?",
            (after, last, _REPACK_ROWS),
        ).fetchall()
        end = rows[-1][0] if rows else last
        conn.execute("DELETE FROM documents WHERE rowid > ? AND rowid <= ?", (after, end))
        conn.executemany(INSERT_ROW, [row[1:] for row in rows])
        conn.execute("COMMIT")
    return int(end)


def _release_free_pages(store: DocumentStore, write_lock: threading.Lock) -> None:
    free: int | None = None
    while True:
        with write_lock:
            store.ensure_open()
            previous, free = free, int(store.writer.execute("PRAGMA freelist_count").fetchone()[0])
            # Stops when nothing is left, or nothing moved (a database not in incremental mode frees nothing).
            if free == 0 or free == previous:
                return
            # executescript steps the pragma to the end; execute() would free one page per call.
            store.writer.executescript(f"PRAGMA incremental_vacuum({_VACUUM_PAGES})")
            store.checkpoint_if_wal_is_large()
