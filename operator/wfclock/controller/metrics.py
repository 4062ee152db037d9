"""Prometheus metrics. Schedule and fire counts are read from Postgres at scrape time, so they
show what the ledger recorded, across operator restarts and replicas."""

from __future__ import annotations

import logging

from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily

log = logging.getLogger("wfclock.metrics")

RECONCILES = Counter("wfclock_reconciles_total", "WorkflowSchedule reconciles", ["result"])
RELEASE_LAG = Histogram(
    "wfclock_one_time_release_lag_seconds",
    "From runAt to the one-time Job being released",
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
)
MISSED = Counter("wfclock_one_time_missed_total", "One-time schedules missed beyond their deadline")


class LedgerCollector:
    def __init__(self, engine):
        self.engine = engine

    def collect(self):
        from sqlalchemy import func, select

        from wfclock.db.store import fire_counts
        from wfclock.db.tables import workflow_schedules as t

        schedules = GaugeMetricFamily(
            "wfclock_schedules", "Schedules by trigger type and state", labels=["type", "state"]
        )
        fires = GaugeMetricFamily(
            "wfclock_fires", "Fires recorded in the ledger, by outcome", labels=["outcome", "type"]
        )
        try:
            with self.engine.connect() as conn:
                query = (
                    select(t.c.trigger_type, t.c.status, func.count())
                    .where(t.c.deleted_at.is_(None))
                    .group_by(t.c.trigger_type, t.c.status)
                )
                for kind, state, count in conn.execute(query):
                    schedules.add_metric([kind, state], count)
            for (outcome, kind), count in fire_counts(self.engine).items():
                fires.add_metric([outcome, kind], count)
        except Exception as exc:  # noqa: BLE001 - a scrape must not fail with the database
            log.warning("metrics: database unavailable: %s", exc)
        yield schedules
        yield fires


_registered: LedgerCollector | None = None


def register_ledger(engine) -> None:
    global _registered
    if _registered is None:
        _registered = LedgerCollector(engine)
        REGISTRY.register(_registered)
    else:
        _registered.engine = engine
