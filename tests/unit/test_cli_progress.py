"""How `switchyard migrate` renders collections: the `collections` table and the lines of `status --watch`."""

from __future__ import annotations

from proxy._gen.switchyard.v1 import admin_service_pb2 as pb
from proxy.cli.progress import (
    backfill_finished,
    collection_lines,
    collections_table,
    progress_tenths,
    redraw,
    status_report,
)


def _summary(name: str, *, migrating: bool = True, **fields: object) -> pb.CollectionSummary:
    base: dict[str, object] = {"name": name, "serving_index": f"{name}-old", "phase": "none", "coverage": 1.0}
    if migrating:
        base.update(old_index=f"{name}-old", new_index=f"{name}-new", phase="backfilling")
    return pb.CollectionSummary(**{**base, **fields})


def _status(phase: str, done: int, total: int, complete: bool = False) -> pb.GetMigrationStatusResponse:
    backfill = pb.BackfillProgress(done=done, total=total, complete=complete)
    return pb.GetMigrationStatusResponse(
        phase=phase, backfill=backfill, coverage=done / total if total else 1.0
    )


def test_collections_table_has_a_row_per_collection_in_aligned_columns() -> None:
    table = collections_table(
        [
            _summary(
                "docs",
                is_default=True,
                serving_index="docs-new",
                phase="cut_over",
                backfill_done=301,
                backfill_total=301,
            ),
            _summary("tickets", coverage=0.133, backfill_done=20, backfill_total=150),
        ]
    )
    header, docs, tickets = table.splitlines()
    assert header.split() == [
        "collection",
        "default",
        "serving",
        "old",
        "->",
        "new",
        "phase",
        "coverage",
        "backfill",
    ]
    assert docs.split() == [
        "docs",
        "*",
        "docs-new",
        "docs-old",
        "->",
        "docs-new",
        "cut_over",
        "100.0%",
        "301/301",
    ]
    assert tickets.split() == [
        "tickets",
        "tickets-old",
        "tickets-old",
        "->",
        "tickets-new",
        "backfilling",
        "13.3%",
        "20/150",
    ]
    # Columns line up: each phase starts where the header's `phase` does, numbers end where theirs do.
    assert docs.index("cut_over") == tickets.index("backfilling") == header.index("phase")
    assert len(docs) == len(tickets) == len(header)


def test_collections_table_marks_only_the_default_collection() -> None:
    rows = collections_table([_summary("a"), _summary("b", is_default=True)]).splitlines()[1:]
    assert "*" not in rows[0] and rows[1].split()[:2] == ["b", "*"]


def test_a_collection_without_migration_shows_dashes_for_old_new_and_backfill() -> None:
    row = collections_table([_summary("plain", migrating=False)]).splitlines()[1]
    assert row.split() == ["plain", "plain-old", "-", "none", "100.0%", "-"]


def test_watch_lines_name_each_collection_and_align_their_progress() -> None:
    lines = collection_lines(
        {
            "docs": _status("cut_over", 301, 301, complete=True),
            "tickets": _status("backfilling", 30, 150),
            "x": None,
        }
    )
    assert [line.split()[0] for line in lines] == ["docs", "tickets", "x"]
    assert "301/301 docs" in lines[0] and "30/150 docs" in lines[1] and " 20.0%" in lines[1]
    assert lines[2].endswith("none (no migration)")
    assert lines[0].index("cut_over") == lines[1].index("backfilling") == lines[2].index("none")


def test_a_backfill_is_finished_when_complete_or_at_rest() -> None:
    assert not backfill_finished(_status("backfilling", 30, 150))
    assert not backfill_finished(_status("paused", 30, 150))
    assert backfill_finished(_status("backfilling", 150, 150, complete=True))
    assert backfill_finished(_status("planned", 0, 0))
    assert backfill_finished(_status("rolled_back", 30, 150))


def test_progress_tenths_step_by_ten_percent() -> None:
    assert [progress_tenths(_status("backfilling", done, 150)) for done in (0, 14, 15, 149, 150)] == [
        0,
        0,
        1,
        9,
        10,
    ]
    assert progress_tenths(_status("planned", 0, 0)) == 10


def test_redraw_moves_up_over_the_lines_it_drew_last() -> None:
    assert redraw(["a", "b"], 0, 80) == "a\x1b[K\nb\x1b[K\n"
    assert redraw(["a", "b"], 2, 80) == "\x1b[2Fa\x1b[K\nb\x1b[K\n"


def test_redraw_cuts_lines_that_would_wrap() -> None:
    assert redraw(["abcdef", "ab"], 2, 5) == "\x1b[2Fabcd\x1b[K\nab\x1b[K\n"


def test_status_report_names_its_collection() -> None:
    status = _status("backfilling", 30, 150)
    status.collection = "tickets"
    assert status_report(status).splitlines()[0].split() == ["collection", "tickets"]
