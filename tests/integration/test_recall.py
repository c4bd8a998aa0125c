"""On two incompatible embedders, the merged answer beats "query the new index only" while B is partial."""

from __future__ import annotations

import pytest

from proxy.adapters.embedders.hashing import HashingEmbedder
from proxy.bench.recall import NAIVE, RecallRow, recall_table


@pytest.fixture(scope="module")
def table() -> list[RecallRow]:
    return recall_table(
        HashingEmbedder("hash-a", 384, seed=1),
        HashingEmbedder("hash-b", 384, seed=2),
        corpus_size=1500,
        query_count=80,
        coverages=(0.0, 0.25, 0.5, 0.75, 1.0),
        strategies=("calibrated", "minmax", "rrf", "zscore"),
    )


@pytest.mark.parametrize("coverage", [0.25, 0.5, 0.75])
def test_calibrated_merge_beats_naive_new_at_partial_coverage(
    table: list[RecallRow], coverage: float
) -> None:
    row = next(r for r in table if r.coverage == coverage)
    assert row.recall["calibrated"] >= row.recall[NAIVE] + 0.08, row.recall


def test_every_strategy_beats_naive_new_while_half_built(table: list[RecallRow]) -> None:
    row = next(r for r in table if r.coverage == 0.5)
    assert all(row.recall[name] > row.recall[NAIVE] for name in ("calibrated", "minmax", "rrf", "zscore")), (
        row.recall
    )


def test_empty_new_index_leaves_only_the_old_answer(table: list[RecallRow]) -> None:
    row = table[0]
    assert row.recall[NAIVE] == 0.0
    assert row.recall["calibrated"] > 0.5  # the old model agrees with the new one on most of the top 10


def test_full_coverage_matches_a_full_reindex(table: list[RecallRow]) -> None:
    assert all(value >= 0.95 for value in table[-1].recall.values()), table[-1].recall


def test_real_model_table_runs_on_the_real_pair() -> None:
    from proxy.bench.recall import real_model_table
    from proxy.demo.real_corpus import real_corpus, real_queries

    rows = real_model_table(real_corpus(60), real_queries(6))
    assert [r.coverage for r in rows] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert rows[0].recall[NAIVE] == 0.0
    assert rows[-1].recall[NAIVE] == pytest.approx(1.0), "60 documents fully in B: the search is exact"
    assert rows[2].recall["calibrated"] > rows[2].recall[NAIVE], rows[2].recall
