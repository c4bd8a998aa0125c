"""The hnswlib graph, a cache of the document store that can always be rebuilt from it.

Files in the index directory:
  graph.bin                     the hnswlib graph as of the last flush
  graph.json                    which write sequence graph.bin includes, its size and CRC, and the dim and
                                space it was built for

On open the graph file is loaded and the rows written after its sequence are replayed into it, or, when the
file is missing, corrupt or does not hold every live row, the graph is rebuilt from the store.
"""

from __future__ import annotations

import json
import os
import zlib
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import hnswlib
import numpy as np

from proxy.adapters.hnsw.store import DocumentStore
from proxy.core.model import Vector

Space = Literal["cosine", "ip"]

_GRAPH_FILE = "graph.bin"
_GRAPH_META_FILE = "graph.json"
# A graph built from scratch leaves room for a quarter more elements before its first resize.
_GRAPH_HEADROOM = 1.25


@dataclass(frozen=True)
class GraphSettings:
    """How one index's graphs are built and searched (a loaded graph keeps its own m, ef_construction)."""

    dim: int
    space: Space
    m: int
    ef_construction: int
    ef_search: int
    initial_capacity: int


def open_graph(
    store: DocumentStore, directory: Path, settings: GraphSettings, seq: int, live_count: int
) -> tuple[hnswlib.Index, int]:
    """The graph file caught up with the store, or a graph rebuilt from it; and the sequence on disk, or -1.

    `seq` is the store's latest write sequence and `live_count` its number of live documents.
    """
    loaded = _load_graph(directory, settings, seq)
    if loaded is not None:
        graph, saved_seq = loaded
        replay(graph, store, saved_seq)
        if _graph_holds_live_rows(graph, store):
            return graph, saved_seq
    return build_graph(store, settings, live_count, seq), -1


def has_saved_graph(directory: Path) -> bool:
    return (directory / _GRAPH_FILE).exists()


def save_graph(graph: hnswlib.Index, directory: Path, settings: GraphSettings, seq: int) -> None:
    """Writes `graph`, holding the rows up to write sequence `seq`, atomically; the caller keeps it still."""
    graph_path = directory / _GRAPH_FILE
    temporary = graph_path.with_name(_GRAPH_FILE + ".tmp")
    graph.save_index(str(temporary))
    _fsync(temporary)
    checksum = _crc32(temporary)
    os.replace(temporary, graph_path)
    # Graph first, then its sequence: after a crash in between, the older sequence only makes the next open
    # replay rows the graph already holds (harmless), or rebuild when the recorded size no longer matches.
    meta: dict[str, object] = {"seq": seq, "graph_bytes": graph_path.stat().st_size, "graph_crc32": checksum}
    meta |= {"dim": settings.dim, "space": settings.space}
    _write_atomically(directory / _GRAPH_META_FILE, json.dumps(meta).encode())


def replay(graph: hnswlib.Index, store: DocumentStore, saved_seq: int) -> None:
    """Brings `graph`, which holds the rows up to write sequence `saved_seq`, up to date with the store."""
    adds: dict[int, Vector] = {}
    for label, deleted, vector in store.rows_written_after(saved_seq):
        if deleted:
            # Already marked, or its vector never reached this graph: either way nothing is left to hide.
            with suppress(RuntimeError):
                graph.mark_deleted(label)
        else:
            adds[label] = np.frombuffer(vector, dtype=np.float32)
    if adds:
        add_to_graph(graph, list(adds), list(adds.values()))


def build_graph(
    store: DocumentStore, settings: GraphSettings, live_count: int, up_to_seq: int, threads: int = -1
) -> hnswlib.Index:
    """A new graph of the rows live with seq <= `up_to_seq`, sized for `live_count` plus headroom.

    Rows are read in label order, one short read per batch: a read transaction held for the whole build
    would keep every checkpoint waiting, and writes with them. A row changed during the build has a later
    sequence, so whoever replays the sequences after `up_to_seq` brings it up to date.
    """
    graph = hnswlib.Index(space=settings.space, dim=settings.dim)
    graph.init_index(
        max_elements=max(settings.initial_capacity, int(live_count * _GRAPH_HEADROOM)),
        M=settings.m,
        ef_construction=settings.ef_construction,
    )
    graph.set_ef(settings.ef_search)
    after = -1
    while batch := store.live_vector_batch(up_to_seq, after):
        add_to_graph(
            graph,
            [label for label, _ in batch],
            [np.frombuffer(v, np.float32) for _, v in batch],
            threads,
        )
        after = batch[-1][0]
    return graph


def add_to_graph(graph: hnswlib.Index, labels: list[int], vectors: list[Vector], threads: int = -1) -> None:
    """Adds or replaces vectors by label; hnswlib unmarks a deleted label when it is added again."""
    # Counts every label as new, so capacity may run a little ahead; hnswlib raises rather than grows.
    needed = graph.element_count + len(labels)
    if needed > graph.max_elements:
        graph.resize_index(max(needed, 2 * graph.max_elements))
    graph.add_items(np.stack(vectors), np.asarray(labels, dtype=np.int64), num_threads=threads)


def _load_graph(directory: Path, settings: GraphSettings, seq: int) -> tuple[hnswlib.Index, int] | None:
    graph_path = directory / _GRAPH_FILE
    try:
        meta = json.loads((directory / _GRAPH_META_FILE).read_text())
        # hnswlib checks neither dim nor space when loading, and damaged bytes can crash it outright.
        if (
            meta["dim"] != settings.dim
            or meta["space"] != settings.space
            or meta["seq"] > seq
            or meta["graph_bytes"] != graph_path.stat().st_size
            or meta["graph_crc32"] != _crc32(graph_path)
        ):
            return None
        graph = hnswlib.Index(space=settings.space, dim=settings.dim)
        graph.load_index(str(graph_path), max_elements=settings.initial_capacity)
    except (OSError, ValueError, KeyError, TypeError, RuntimeError):
        return None
    graph.set_ef(settings.ef_search)
    return graph, int(meta["seq"])


def _graph_holds_live_rows(graph: hnswlib.Index, store: DocumentStore) -> bool:
    in_graph = set(graph.get_ids_list())
    return all(label in in_graph for label in store.live_labels())


def _crc32(path: Path) -> int:
    checksum = 0
    with open(path, "rb") as file:
        while chunk := file.read(1 << 20):
            checksum = zlib.crc32(chunk, checksum)
    return checksum


def _fsync(path: Path) -> None:
    with open(path, "rb") as file:
        os.fsync(file.fileno())


def _write_atomically(path: Path, data: bytes) -> None:
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
