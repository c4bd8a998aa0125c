"""The backfill's id-range slices: how the corpus is cut, how a slice's checkpoint is stored, and a slice batch
between its two stages (read and embedded, waiting for its write)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from proxy.core.binding import IndexBinding
from proxy.core.model import IndexRecord, StoredDocument

SLICES_KEY = "backfill:slices"


@dataclass(frozen=True)
class Slice:
    number: int
    after: str | None
    """Exclusive lower bound of the slice's id range (None: from the first id)."""
    until: str | None
    """Inclusive upper bound (None: to the last id)."""
    cursor: str | None
    done: int = 0
    finished: bool = False

    def lease_name(self) -> str:
        return f"backfill:slice:{self.number}"

    def field(self) -> str:
        """The slice's field in the SLICES_KEY hash."""
        return str(self.number)

    def advanced(self, page: list[StoredDocument], finished: bool) -> Slice:
        """The slice once `page` (documents of its range, in id order, from its cursor on) is written."""
        cursor = page[-1].id if page else self.cursor
        return Slice(self.number, self.after, self.until, cursor, self.done + len(page), finished)


@dataclass(frozen=True)
class SliceBatch:
    """One page of a slice, read and embedded, waiting for its write; its checkpoint follows the write."""

    base: Slice
    """The slice as stored when this batch is next to be written: its checkpoint moves on only from there."""
    checkpoint: Slice
    """The slice once this batch is written."""
    docs: tuple[StoredDocument, ...]
    """The page's documents in the slice's range (moved once written, whether re-embedded or already there)."""
    records: tuple[IndexRecord, ...]
    """Those the target lacked at their version, with the new model's vectors."""
    scanned: int
    """Documents the page read, beyond the range's end too."""


def plan_slices(source: IndexBinding, slice_size: int) -> list[Slice]:
    """Cuts the source's id space into ranges of about `slice_size` documents; the last range is open."""
    bounds: list[str] = []
    after: str | None = None
    while True:
        page = source.index.scan(after, slice_size)
        if len(page) < slice_size:
            break
        after = page[-1].id
        bounds.append(after)
    lows: list[str | None] = [None, *bounds]
    highs: list[str | None] = [*bounds, None]
    return [Slice(n, lo, hi, lo) for n, (lo, hi) in enumerate(zip(lows, highs, strict=True))]


def dump_slice(slice_: Slice) -> str:
    return json.dumps(asdict(slice_))


def load_slice(raw: str) -> Slice:
    return Slice(**json.loads(raw))
