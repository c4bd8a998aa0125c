"""The adopted-table section of BENCHMARKS.md; every figure comes from the run object.

Besides the tables it says which default the figures support (side table, or a new column filled by UPDATEs),
worked out from the figures of this run: nothing here is typed in by hand.
"""

from __future__ import annotations

from proxy.bench.adopt import AdoptResult, AdoptRun
from proxy.bench.adopt_app import MAINTENANCE_WORK_MEM
from proxy.bench.adopt_refs import UPDATE_BATCH
from proxy.bench.report_sections import fmt_bytes, fmt_ms, fmt_rate, fmt_ratio, missing_note, table
from proxy.bench.results import BenchRun
from proxy.bench.stats import LatencySummary, ratio

TITLE = "## 10. Adopted pgvector table: an application's own table migrated in place"


def adopt_summary_rows(run: BenchRun) -> list[list[str]]:
    rows = []
    for x in run.adopt.runs if run.adopt else []:
        rows.append(
            [
                f"Adopted table: backfill / min(raw embed, DB COPY + index) ({x.name})",
                fmt_ratio(x.ratio),
                "reported",
                "-",
            ]
        )
        rows.append(
            [
                f"Adopted table: backfill / min(raw embed, DB INSERT into the live graph), empty / full ({x.name})",
                f"{fmt_ratio(x.insert_ratio)} / {fmt_ratio(x.full_insert_ratio)}",
                "reported",
                "-",
            ]
        )
        rows.append(
            [
                f"Adopted table: direct writes p99 during backfill / before ({x.name})",
                fmt_ratio(x.writer.p99_ratio),
                "reported",
                "-",
            ]
        )
    return rows


def adopt_section(run: BenchRun) -> str:
    missing = missing_note(run, "adopt")
    if missing or run.adopt is None:
        return f"{TITLE}\n\n{missing}"
    r = run.adopt
    parts = [TITLE, _intro(r), _throughput(r), _storage(r), _writer(r)]
    parts += [_ddl(x) for x in r.runs]
    parts += [_choice(x) for x in r.runs if x.alternative is not None]
    parts.append(_notes(r))
    return "\n\n".join(p for p in parts if p)


def _intro(r: AdoptResult) -> str:
    s = r.server
    own = f" ({s.database_note})" if s.database_note else " (the benchmark's own database)"
    return (
        "Alone: `switchyard bench --sections adopt` (PGVECTOR_DSN, else scripts/ensure-pgvector.sh;"
        " `--real-model none` leaves the real-model run out)."
        f" PostgreSQL {s.server_version} with pgvector {s.pgvector_version} at `{s.where}`{own}. Per run, the"
        " application's table `items(item_id bigint PRIMARY KEY, title, body, category, updated_at,"
        " embedding vector)` with an HNSW index (vector_cosine_ops, pgvector's defaults) on the old model's"
        " vectors, loaded by binary COPY. Throughout, the application writes it directly on a connection of"
        f" its own, single-row autocommit statements at a fixed pace ({_rates(r)}; of every 20: 17 text"
        " updates with the row's new old-model vector, 2 inserts, 1 delete; every text and vector written is"
        " new, as an application's are), each write timed: for"
        f" {r.window_s:g} s before adoption, during each DDL step, for {r.window_s:g} s adopted but idle, and"
        " during the backfill. The backfill runs in a sidecar process whose two indexes are the adopted"
        " table (`pgvector.adopt` with `vector_column`) and the new model's side table; it is done when the"
        " sidecar reports it complete with no direct write pending and, the writer stopped, the side table"
        " has no row behind (`SideVectorIndex.rows_behind`, the cut-over's own check); backfill docs/s is the"
        " table's rows over that time. Storage is pg_total_relation_size (heap, TOAST, indexes) of the"
        " application's table + `switchyard_<table>_changes` + the side table, sampled every 0.5 s, over the"
        " application's table alone just before adoption. References, same run, same texts: the new model"
        " embedding in this process in the backfill's batches, and the database writing its vectors into a"
        f" table of the side table's layout: by binary COPY then one HNSW build (maintenance_work_mem"
        f" {MAINTENANCE_WORK_MEM} in that session), and by INSERT ... unnest batches of {UPDATE_BATCH:,}"
        " into a table whose HNSW index exists, as the backfill writes."
    )


def _rates(r: AdoptResult) -> str:
    return ", ".join(f"{x.name} run {x.writer.rate:g} a second" for x in r.runs)


def _throughput(r: AdoptResult) -> str:
    rows = [
        [
            x.name,
            f"{x.rows:,}",
            f"{x.old_model} -> {x.new_model}",
            fmt_rate(x.backfill_docs_per_s),
            fmt_rate(x.embed_docs_per_s),
            fmt_rate(x.bulk.bulk_rows_per_s),
            f"{fmt_rate(x.bulk.insert_rows_per_s)} / {fmt_rate(x.bulk.full_insert_rows_per_s)}",
            fmt_ratio(x.ratio),
            f"{fmt_ratio(x.insert_ratio)} / {fmt_ratio(x.full_insert_ratio)}",
            x.binds,
            fmt_ratio(x.storage.peak_ratio),
            fmt_ratio(x.alternative.peak_ratio) if x.alternative else "not run",
        ]
        for x in r.runs
    ]
    header = [
        "run",
        "rows",
        "model pair",
        "backfill docs/s",
        "raw embed docs/s",
        "DB COPY + index rows/s",
        "DB INSERT rows/s, empty / full graph",
        "backfill / min(embed, COPY)",
        "backfill / min(embed, INSERT), empty / full",
        "slower stage",
        "peak storage, side table",
        "peak storage, new column",
    ]
    details = [
        f"- {x.name}: table loaded in {x.load.copy_s:.1f} s (COPY) + {x.load.index_s:.1f} s (HNSW build);"
        f" backfill complete after {x.complete_s:.1f} s, converged after {x.backfill_wall_s:.1f} s (the"
        f" backfill's own rate from its first progress: {fmt_rate(x.progress_docs_per_s)} docs/s, batches of"
        f" {x.batch}); at the end {x.app_rows:,} rows in the table and {x.side_rows:,} live in the side table,"
        f" {x.rows_behind} behind, {x.direct_writes_pending} direct writes pending; references: COPY of"
        f" {x.bulk.copy_rows:,} rows then the index, INSERTs of the other {x.bulk.insert_rows:,}. During the backfill the application wrote"
        f" {x.writer.during.count:,} rows ({fmt_rate(x.writer.during.qps)}/s), nearly each one a row to embed"
        f" again on top of the table's: {fmt_rate(ratio(x.rows + x.writer.during.count, x.backfill_wall_s))}"
        " docs/s counting them."
        for x in r.runs
    ]
    intro = (
        "A backfill can go no faster than the slower of its stages: the new model's embedding, and the database"
        " writing the vectors. The side table's HNSW index exists from the start (the new leg serves what has"
        " arrived), so the database's rate for it is INSERTs into a graph that grows from empty to the table's"
        " size: both ends are measured (a backfill's first rows into an empty graph, its last into the graph of"
        " every other row), the backfill's rate lies between them. COPY and one index build is the"
        " fastest way in, for a design that would index at the end. The slower stage is named against"
        " INSERTs into the full graph."
    )
    return (
        f"### Backfill against its two stages\n\n{intro}\n\n"
        + table(header, rows)
        + "\n\n"
        + "\n".join(details)
    )


def _storage(r: AdoptResult) -> str:
    rows = []
    for x in r.runs:
        s = x.storage
        rows.append(
            [
                x.name,
                "side table (built)",
                fmt_bytes(s.baseline_bytes),
                fmt_bytes(s.peak_bytes),
                fmt_ratio(s.peak_ratio),
                fmt_bytes(s.end_bytes),
                f"side table {fmt_bytes(s.side_bytes)}, changes {fmt_bytes(s.changes_bytes)}, the application's"
                f" table {fmt_bytes(s.app_end_bytes)} (its own writes included); the table after retiring the"
                f" old column: {fmt_bytes(s.retired_bytes)} ({s.samples} samples)",
            ]
        )
        if x.alternative is not None:
            a = x.alternative
            rows.append(
                [
                    x.name,
                    "new column + UPDATE",
                    fmt_bytes(a.baseline_bytes),
                    fmt_bytes(a.peak_bytes),
                    fmt_ratio(a.peak_ratio),
                    fmt_bytes(a.end_bytes),
                    f"{a.rows:,} rows: ADD COLUMN {a.add_column_ms:.1f} ms, UPDATEs {a.update_s:.1f} s, HNSW"
                    f" build {a.index_s:.1f} s ({fmt_rate(a.rows_per_s)} rows/s); {a.dead_rows:,} dead rows"
                    f" reported at the end (autovacuum {a.autovacuum})",
                ]
            )
    header = ["run", "design", "table before", "peak", "peak / before", "at the end", "detail"]
    return (
        "### Peak storage, measured by PostgreSQL\n\nThe new-column alternative runs on a copy of the"
        " freshly loaded table (its key and HNSW index built as the original's), with no writer: ALTER TABLE"
        f" ADD COLUMN, UPDATEs of {UPDATE_BATCH:,} rows setting it to the same new vectors, then its HNSW"
        " index; sampled the same way.\n\n" + table(header, rows)
    )


def _writer(r: AdoptResult) -> str:
    rows = []
    for x in r.runs:
        w = x.writer
        for window, m in (
            ("before adoption", w.before),
            ("adopted, idle", w.adopted_idle),
            ("during backfill", w.during),
        ):
            rows.append([x.name, window, *_latency_cells(m, w.before)])
    header = ["run", "window", "writes", "failed", "p50 ms", "p99 ms", "p50 / before", "p99 / before"]
    counts = [
        f"- {x.name}: {x.writer.counts.updated:,} updates, {x.writer.counts.inserted:,} inserts,"
        f" {x.writer.counts.deleted:,} deletes, {x.writer.counts.failed} failed"
        + (f" (first: `{x.writer.counts.first_error}`)" if x.writer.counts.failed else "")
        + "."
        for x in r.runs
    ]
    return "### The application's direct writes\n\n" + table(header, rows) + "\n\n" + "\n".join(counts)


def _latency_cells(m: LatencySummary, before: LatencySummary) -> list[str]:
    return [
        f"{m.count:,}",
        str(m.errors),
        fmt_ms(m.p50_ms),
        fmt_ms(m.p99_ms),
        fmt_ratio(ratio(m.p50_ms, before.p50_ms)),
        fmt_ratio(ratio(m.p99_ms, before.p99_ms)),
    ]


def _ddl(x: AdoptRun) -> str:
    rows = [
        [
            s.phase,
            f"`{s.statement}`",
            f"{s.ms:.1f}",
            str(s.writes),
            fmt_ms(s.writer_max_ms) if s.writes else "-",
        ]
        for s in x.ddl
    ]
    header = ["phase", "statement", "ms", "writes running", "slowest of them, ms"]
    adopt = [s for s in x.ddl if s.phase == "adopt"]
    triggers = [n for n, s in enumerate(adopt) if "TRIGGER" in s.statement]
    held = sum(s.ms for s in adopt[triggers[0] :]) if triggers else 0.0
    return (
        f"### DDL steps ({x.name} run, {x.rows:,} rows)\n\n"
        "Each statement timed as adoption runs it (lock_timeout set; the adoption statements in one"
        " transaction, so a lock a statement takes is held until COMMIT); beside it, the application's writes"
        " that were running at some moment of it and the slowest of them: a write a lock held up shows there."
        f" The application's writes could wait on the table's trigger lock for at most {held:.1f} ms (from the"
        " first CREATE TRIGGER to the end of COMMIT).\n\n" + table(header, rows)
    )


def _choice(x: AdoptRun) -> str:
    a = x.alternative
    assert a is not None
    side, column = x.storage.peak_ratio, a.peak_ratio
    side_smaller = side <= column
    lines = [
        f"### Side table or new column ({x.name} run, {x.rows:,} rows)",
        "",
        f"- Peak storage over the table before: side table {fmt_ratio(side)}, new column {fmt_ratio(column)}"
        f" ({'side table' if side_smaller else 'new column'} lower by {abs(column - side):.2f} of the table's"
        " size). At the end the new column's table is still"
        f" {fmt_ratio(a.end_ratio)} its size before ({a.dead_rows:,} dead row versions reported): an UPDATE"
        " writes each row anew, text and old vector included, and VACUUM only makes that space reusable; the"
        " side table's space goes with `DROP TABLE`, and after retirement the old column's space comes back"
        " as rows are rewritten.",
        f"- Database time for the new vectors alone (no embedding): new column {a.total_s:.1f} s for"
        f" {a.rows:,} rows ({fmt_rate(a.rows_per_s)} rows/s: UPDATEs, then one HNSW build); side table"
        f" written as the backfill writes it {fmt_rate(x.bulk.insert_rows_per_s)} rows/s into an empty graph to"
        f" {fmt_rate(x.bulk.full_insert_rows_per_s)} into a full one (INSERTs into a live HNSW index; the"
        f" backfill itself, embedding included, averaged {fmt_rate(x.backfill_docs_per_s)}), or"
        f" {fmt_rate(x.bulk.bulk_rows_per_s)} rows/s by COPY and one build.",
        f"- The figures support **{'the side table' if side_smaller else 'the new column'}** as the default"
        + (
            ": less peak storage, nothing left behind in the application's table, and no UPDATE of the"
            " application's rows (an UPDATE batch locks its rows against the application's own writes and"
            " fires its triggers; that contention is not measured here, the copy had no writer)."
            if side_smaller
            else ": less peak storage in this run; weigh it against rewriting every row of the application's"
            " table (row locks against its writes, bloat until VACUUM FULL)."
        ),
    ]
    return "\n".join(lines)


def _notes(r: AdoptResult) -> str:
    notes = [
        "- One machine for everything: PostgreSQL, the sidecar, the writer and the references share its"
        " cores, so absolute rates move with its load; each ratio compares figures of this run.",
        "- A DDL step lasts milliseconds and the writer writes every few tens of milliseconds, so most steps"
        " overlap no write: an empty cell means none was running, not that none would wait.",
        *_small_samples(r),
        *[f"- {n}" for n in r.notes],
    ]
    return "### Notes\n\n" + "\n".join(notes)


def _small_samples(r: AdoptResult) -> list[str]:
    """A p99 of fewer than 100 writes is nearly their slowest one: say so where a window had that few."""
    notes = []
    for x in r.runs:
        w = x.writer
        few = [
            name
            for name, m in (("before", w.before), ("adopted idle", w.adopted_idle), ("during", w.during))
            if m.count < 100
        ]
        if few:
            notes.append(
                f"- {x.name} run: the {', '.join(few)} window(s) hold fewer than 100 writes, so their p99 is"
                " nearly their slowest write; read its ratio as a rough one."
            )
    return notes
