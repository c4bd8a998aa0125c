"""Keeps a half-built new index from displacing the old index's answers on the strength of normalized scores.

Early in a backfill the new leg's best hits are the best of a small sample of the corpus, yet every merge puts
them on one scale with the old leg's genuinely close documents (min-max makes each leg's best hit 1.0). Measured
with two real models, the merged answer was then worse than the old index alone.

The rule: if the covered documents are a random share `c` of the corpus, the new leg's r-th hit belongs in the
finished index's top k exactly when at least r of those top k are covered, which happens with probability
P(Binomial(k, c) >= r). A new-only hit enters the answer ahead of the old leg's hits only while that probability
is at least 0.9; the others still fill places the old leg leaves empty. The bar is high because the old hit it
displaces may well belong in the finished top k too (for the two hashing models two in three of the old index's
hits do): at one half, three of four merges fell below the old index alone at 10% coverage, at 0.9 none did, and
recall at 25-75% rose too (proxy/bench/recall.py). Doing better than the old index mid-migration is candidate
re-ranking's job (rerank.py), not the merge's. Lazy moves cover the documents queries touch first, so real
coverage is skewed towards relevant documents and the rule errs on the side of the old index. It needs no
learnt state, so it holds before any calibration has data.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from proxy.core.model import Hit

ADMIT_PROBABILITY = 0.9


def admitted_new_hits(k: int, coverage: float) -> int:
    """The largest r with P(Binomial(k, coverage) >= r) >= 0.9: how many new-only hits may displace old ones."""
    if coverage >= 1.0:
        return k
    if coverage <= 0.0:
        return 0
    at_least = 1.0  # P(X >= r), starting at r = 0
    for r in range(k + 1):
        if at_least < ADMIT_PROBABILITY:
            return r - 1
        at_least -= math.comb(k, r) * coverage**r * (1.0 - coverage) ** (k - r)
    return k


def guard_new_hits(
    merged: Sequence[Hit],
    new_index: str,
    confirmed: set[str],
    k: int,
    coverage: float,
    held_by_old: Callable[[Sequence[str]], set[str]],
) -> list[Hit]:
    """The merged ranking with new-only hits past the admitted number moved behind the old leg's hits.

    `new_index`: the new leg's index name (a merged hit keeps the index it came from). `confirmed`: ids the
    old leg also returned; a new-leg hit for one of those displaces nothing and is never moved. `held_by_old`
    says which ids the old index still holds: one it no longer holds (retired as the migration went) has no
    other answer than the new leg's, so it is never moved either. Asked only when something would move.
    """
    allowed = admitted_new_hits(k, coverage)
    new_only = [h.id for h in merged if h.index == new_index and h.id not in confirmed]
    if len(new_only) <= allowed:
        return list(merged[:k])
    held = held_by_old(new_only)
    admitted: list[Hit] = []
    deferred: list[Hit] = []
    for hit in merged:
        competing = hit.index == new_index and hit.id not in confirmed and hit.id in held
        if competing and allowed <= 0:
            deferred.append(hit)
            continue
        allowed -= competing
        admitted.append(hit)
    return (admitted + deferred)[:k]
