"""Hot reload: applies what may change in a running sidecar's config, and says what waits for a restart."""

from __future__ import annotations

import logging

from proxy.app.assembly import App
from proxy.app.config import SwitchyardConfig
from proxy.core.merge import make_merger

log = logging.getLogger(__name__)


def apply_reload(app: App, previous: SwitchyardConfig, updated: SwitchyardConfig) -> None:
    """Applies what may change while serving; other changes wait for a restart (and say so)."""
    live = {"query", "migration"}
    for section in sorted(set(SwitchyardConfig.model_fields) - live):
        if getattr(previous, section) != getattr(updated, section):
            log.warning("config: `%s` changed; it takes effect after a restart", section)
    if updated.query.merge != previous.query.merge:
        app.service.set_merger(make_merger(updated.query.merge, serving=True))
    app.service.set_shadow_sample_rate(updated.query.shadow_sample_rate)
    controller = app.controller
    if controller is None or updated.migration is None or previous.migration is None:
        return
    if updated.query.traffic_percent != previous.query.traffic_percent:
        controller.set_traffic_percent(updated.query.traffic_percent)
        log.info("config: traffic split set to %g%%", updated.query.traffic_percent)
    if updated.migration.backfill.rate_limit != previous.migration.backfill.rate_limit:
        controller.set_rate(updated.migration.backfill.rate_limit)
        log.info("config: backfill rate limit set to %g docs/s", updated.migration.backfill.rate_limit)
    if updated.migration.backfill.batch_time_ms != previous.migration.backfill.batch_time_ms:
        controller.set_batch_time(updated.migration.backfill.batch_time_ms)
        log.info("config: backfill batch time set to %g ms", updated.migration.backfill.batch_time_ms)
    if updated.migration.backfill.embed_nice != previous.migration.backfill.embed_nice:
        log.warning("config: `migration.backfill.embed_nice` changed; it takes effect after a restart")
    budget = updated.migration.backfill.latency_budget_ms
    if budget != previous.migration.backfill.latency_budget_ms:
        controller.set_latency_budget(budget)
        log.info("config: backfill latency budget set to %s", f"{budget:g} ms" if budget else "none")
