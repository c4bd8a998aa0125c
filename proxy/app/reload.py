"""Hot reload: applies what may change in a running sidecar's config, and says what waits for a restart."""

from __future__ import annotations

import logging

from proxy.app.assembly import App, CollectionApp
from proxy.app.config import Collection, SwitchyardConfig
from proxy.core.merge import make_merger

log = logging.getLogger(__name__)

_LIVE_SECTIONS = {"query", "migration", "collections"}


def apply_reload(app: App, previous: SwitchyardConfig, updated: SwitchyardConfig) -> None:
    """Applies what may change while serving; other changes wait for a restart (and say so)."""
    for section in sorted(set(SwitchyardConfig.model_fields) - _LIVE_SECTIONS):
        if getattr(previous, section) != getattr(updated, section):
            log.warning("config: `%s` changed; it takes effect after a restart", section)
    before = {c.name: c for c in previous.collection_list()}
    after = {c.name: c for c in updated.collection_list()}
    if before.keys() != after.keys():
        log.warning("config: the set of collections changed; it takes effect after a restart")
    for name, running in app.collections.items():
        if name in before and name in after:
            _apply_collection(running, before[name], after[name])
    budget = updated.latency_budget_ms()
    if budget != previous.latency_budget_ms():
        for controller in app.controllers():
            controller.set_latency_budget(budget)
        log.info("config: backfill latency budget set to %s", f"{budget:g} ms" if budget else "none")


def _apply_collection(running: CollectionApp, previous: Collection, updated: Collection) -> None:
    where = f"collection {running.name}"
    if updated.serving_index != previous.serving_index:
        log.warning("config: %s: `serving_index` changed; it takes effect after a restart", where)
    if updated.query.merge != previous.query.merge:
        running.service.set_merger(make_merger(updated.query.merge, serving=True))
    running.service.set_shadow_sample_rate(updated.query.shadow_sample_rate)
    rerank, before = updated.query.rerank, previous.query.rerank
    if rerank != before:
        running.service.set_rerank_settings(rerank.settings())
        log.info("config: %s: re-ranking k'=%d, budget %g ms", where, rerank.candidates, rerank.budget_ms)
        if rerank.cache_entries != before.cache_entries:
            log.warning("config: %s: `query.rerank.cache_entries` takes effect after a restart", where)
    controller = running.controller
    if controller is None or updated.migration is None or previous.migration is None:
        if (updated.migration is None) != (previous.migration is None):
            log.warning("config: %s: adding or removing a migration takes effect after a restart", where)
        return
    if updated.query.traffic_percent != previous.query.traffic_percent:
        controller.set_traffic_percent(updated.query.traffic_percent)
        log.info("config: %s: traffic split set to %g%%", where, updated.query.traffic_percent)
    new, old = updated.migration.backfill, previous.migration.backfill
    if new.rate_limit != old.rate_limit:
        controller.set_rate(new.rate_limit)
        log.info("config: %s: backfill rate limit set to %g docs/s", where, new.rate_limit)
    if new.batch_time_ms != old.batch_time_ms:
        controller.set_batch_time(new.batch_time_ms)
        log.info("config: %s: backfill batch time set to %g ms", where, new.batch_time_ms)
    if new.embed_nice != old.embed_nice:
        log.warning(
            "config: %s: `migration.backfill.embed_nice` changed; it takes effect after a restart", where
        )
