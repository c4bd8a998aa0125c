"""On two incompatible embedders, the merged answer beats "query the new index only" while B is partial."""

from __future__ import annotations

import pytest

from proxy.adapters.embedders.hashing import HashingEmbedder
from proxy.bench.recall import COVERAGES, NAIVE, OLD_ONLY, RecallRow, recall_table
from proxy.bench.rerank import CEILING, rerank_column

MERGES = ("calibrated", "minmax", "rrf", "zscore")


@pytest.fixture(scope="module")
def table() -> list[RecallRow]:
    return recall_table(
        HashingEmbedder("hash-a", 384, seed=1),
        HashingEmbedder("hash-b", 384, seed=2),
        corpus_size=1500,
        query_count=80,
        coverages=(0.0, 0.02, 0.1, 0.25, 0.5, 0.75, 1.0),
        strategies=MERGES,
        rerank=(50,),
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
    full = {name: value for name, value in table[-1].recall.items() if name != OLD_ONLY}
    assert all(value >= 0.95 for value in full.values()), full


@pytest.mark.parametrize("coverage", [0.02, 0.1])
def test_at_low_coverage_no_merge_is_worse_than_the_old_index_alone(
    table: list[RecallRow], coverage: float
) -> None:
    row = next(r for r in table if r.coverage == coverage)
    assert all(row.recall[name] >= row.recall[OLD_ONLY] for name in MERGES), row.recall


def test_reranking_beats_every_merge_and_reaches_its_ceiling(table: list[RecallRow]) -> None:
    for row in table[:-1]:
        reranked = row.recall[rerank_column(50)]
        assert reranked >= max(row.recall[name] for name in MERGES), row.recall
        assert reranked >= 0.9 * row.recall[CEILING], row.recall
    assert table[0].embedded[rerank_column(50)] == 50.0, "an empty new index: every candidate is embedded"


def test_real_model_table_runs_on_the_real_pair() -> None:
    from proxy.bench.recall import real_model_table
    from proxy.demo.real_corpus import real_corpus, real_queries

    rows = real_model_table(real_corpus(60), real_queries(6))
    assert [r.coverage for r in rows] == list(COVERAGES)
    assert rows[0].recall[NAIVE] == 0.0
    assert rows[-1].recall[NAIVE] == pytest.approx(1.0), "60 documents fully in B: the search is exact"
    half = next(r for r in rows if r.coverage == 0.5)
    assert half.recall["calibrated"] > half.recall[NAIVE], half.recall
