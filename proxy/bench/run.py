"""`switchyard bench`: runs the sections in one go and writes BENCHMARKS.md and BENCHMARKS.json."""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from proxy.adapters.embedders.hashing import HashingEmbedder
from proxy.bench.adopt import run_adopt
from proxy.bench.backfill import run_backfill_section
from proxy.bench.base import BaseCorpus
from proxy.bench.embed_concurrency import run_embed_concurrency
from proxy.bench.fanout import run_fanout
from proxy.bench.machine import describe_machine, load_average
from proxy.bench.milvus import run_milvus
from proxy.bench.overhead import run_overhead
from proxy.bench.pgvector import run_pgvector
from proxy.bench.recall import REAL_QUERIES, real_model_table, recall_table
from proxy.bench.report import render
from proxy.bench.rerank import latency_rows
from proxy.bench.results import BaseLoad, BenchRun, RealModelRecall, RecallResult, to_json
from proxy.bench.scale import run_scale
from proxy.bench.second_collection import run_collections
from proxy.bench.settings import BenchSettings
from proxy.bench.storage import run_storage
from proxy.core.errors import ConfigError
from proxy.core.ports import Embedder
from proxy.demo.corpus import synthetic_corpus, synthetic_queries
from proxy.demo.real_corpus import real_corpus, real_queries

log = logging.getLogger("bench")
T = TypeVar("T")
_NEEDS_BASE = {"overhead", "fanout", "backfill", "storage", "collections"}


def run_bench(settings: BenchSettings, out_dir: Path, command: str, workdir: Path | None = None) -> BenchRun:
    run = BenchRun(command=command, settings=settings, machine=describe_machine())
    started = time.perf_counter()
    with _scratch(workdir) as root:
        base = BaseCorpus(settings, root)
        if _NEEDS_BASE & set(settings.sections):
            run.base = _timed(run, "base corpus", lambda: _load_base(base))
        _run_sections(run, settings, base, root)
    run.duration_s = time.perf_counter() - started
    run.load_avg_end = load_average()
    write_outputs(run, out_dir)
    return run


def _run_sections(run: BenchRun, settings: BenchSettings, base: BaseCorpus, root: Path) -> None:
    wanted = set(settings.sections)
    if "overhead" in wanted:
        run.overhead = _timed(run, "overhead", lambda: run_overhead(settings, base, root))
    if "fanout" in wanted:
        run.fanout = _timed(run, "fanout", lambda: run_fanout(settings, base, root))
    if "backfill" in wanted:
        run.backfill = _timed(run, "backfill", lambda: run_backfill_section(settings, base, root))
    if "recall" in wanted:
        run.recall = _timed(run, "recall", lambda: _recall(settings))
    if "storage" in wanted:
        # The backfill section's hashing run already sampled storage under the default policy.
        default = run.backfill.variants[0].throughput if run.backfill else None
        run.storage = _timed(run, "storage", lambda: run_storage(settings, base, root, default))
    if "scale" in wanted:
        run.scale = _timed(run, "scale", lambda: run_scale(settings, root))
    if "collections" in wanted:
        run.collections = _timed(run, "collections", lambda: run_collections(settings, base, root))
    if "pgvector" in wanted:
        run.pgvector = _timed(run, "pgvector", lambda: run_pgvector(settings, base, root))
    if "embed_concurrency" in wanted:
        section = root / "embed_concurrency"
        run.embed_concurrency = _timed(
            run, "embed_concurrency", lambda: run_embed_concurrency(settings, section)
        )
    if "adopt" in wanted:
        run.adopt = _timed(run, "adopt", lambda: run_adopt(settings, root))
    if "milvus" in wanted:
        run.milvus = _timed(run, "milvus", lambda: run_milvus(settings, base, root))


def _timed(run: BenchRun, name: str, section: Callable[[], T]) -> T | None:
    """Runs one section; a failure is recorded in the report and the run goes on with the next section."""
    log.info("bench: %s ...", name)
    started = time.perf_counter()
    try:
        return section()
    except Exception as exc:
        log.error("bench: %s failed:\n%s", name, traceback.format_exc())
        run.errors[name] = f"{type(exc).__name__}: {exc}"[:2000]
        return None
    finally:
        run.section_s[name] = time.perf_counter() - started
        log.info("bench: %s took %.1fs", name, run.section_s[name])


def _load_base(base: BaseCorpus) -> BaseLoad:
    started = time.perf_counter()
    built = base.old_index
    total = time.perf_counter() - started
    return BaseLoad(
        corpus=built.count,
        dim=built.dim,
        embed_s=total - built.insert_s - built.flush_s,
        insert_docs_per_s=built.insert_docs_per_s,
        insert_s=built.insert_s,
        flush_s=built.flush_s,
    )


def _recall(settings: BenchSettings) -> RecallResult:
    dim = settings.dim
    rows = recall_table(
        HashingEmbedder("hash-a", dim, 1),
        HashingEmbedder("hash-b", dim, 2),
        corpus_size=settings.recall_corpus,
        query_count=settings.recall_queries,
    )
    real, skipped, real_model = None, "", None
    if settings.real_recall and settings.real_model is not None:
        try:
            real = _real_model_recall()
            real_model = _real_latency_model()
        except ConfigError as exc:  # the models extra is not installed
            skipped = str(exc)
    with tempfile.TemporaryDirectory(prefix="switchyard-rerank-") as tmp:
        corpus = [d.text for d in synthetic_corpus(min(settings.recall_corpus, 2_000))]
        latency = latency_rows(
            corpus, synthetic_queries(min(settings.recall_queries, 60)), Path(tmp), real_model
        )
    return RecallResult(settings.recall_corpus, settings.recall_queries, dim, rows, real, skipped, latency)


def _real_latency_model() -> Embedder:
    """The new model of the real-model table, for re-ranking's added latency with a model in process."""
    from proxy.adapters.embedders.local_models import E5SmallEmbedder

    return E5SmallEmbedder()


def _real_model_recall() -> RealModelRecall:
    started = time.perf_counter()
    corpus, queries = real_corpus(), real_queries(REAL_QUERIES)
    rows = real_model_table(corpus, queries)
    seconds = time.perf_counter() - started
    return RealModelRecall(
        "all-MiniLM-L6-v2", "multilingual-e5-small", len(corpus), len(queries), seconds, rows
    )


@contextmanager
def _scratch(workdir: Path | None) -> Iterator[Path]:
    if workdir is not None:
        workdir.mkdir(parents=True, exist_ok=True)
        yield workdir
        return
    root = Path(tempfile.mkdtemp(prefix="switchyard-bench-"))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def write_outputs(run: BenchRun, out_dir: Path) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    markdown, data = out_dir / "BENCHMARKS.md", out_dir / "BENCHMARKS.json"
    markdown.write_text(render(run))
    data.write_text(json.dumps(to_json(run), indent=2) + "\n")
    return markdown, data
