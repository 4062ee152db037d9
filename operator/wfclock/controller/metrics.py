"""Prometheus metrics. Schedule and fire counts are read from Postgres at scrape time, so they
show what the ledger recorded, across operator restarts and replicas."""

from __future__ import annotations

import contextlib
import logging
from datetime import UTC, datetime

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily

log = logging.getLogger("wfclock.metrics")

RECONCILES = Counter("wfclock_reconciles_total", "WorkflowSchedule reconciles", ["result"])
RELEASE_LAG = Histogram(
    "wfclock_one_time_release_lag_seconds",
    "From runAt to the one-time Job being released",
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
)
MISSED = Counter("wfclock_one_time_missed_total", "One-time schedules missed beyond their deadline")
# After a restart, ready when every pending one-time schedule is back in the queue.
RELEASES_QUEUED = Gauge(
    "wfclock_one_time_releases_queued", "One-time releases waiting in this replica's queue"
)

WATCH_IN_FLIGHT = Gauge(
    "wfclock_watch_events_in_flight",
    "Events of a watch stream handed to kopf and not yet processed",
    ["stream"],
)
WATCH_IN_FLIGHT_PEAK = Gauge(
    "wfclock_watch_events_in_flight_peak",
    "The most events of a watch stream in flight at once since the stream started",
    ["stream"],
)
WATCH_WAITING = Gauge(
    "wfclock_watch_events_waiting",
    "Events of a watch stream read and waiting for a slot (WFCLOCK_EVENTS_IN_FLIGHT)",
    ["stream"],
)


# A stream's three gauges, looked up once: `labels()` costs more than the update, twice an event.
_gate_gauges: dict[str, tuple] = {}


def observe_gate(gate) -> None:
    if gate.closed:  # its watch stream ended (a new one has a gate of its own)
        _gate_gauges.pop(gate.stream, None)
        for gauge in (WATCH_IN_FLIGHT, WATCH_IN_FLIGHT_PEAK, WATCH_WAITING):
            with contextlib.suppress(KeyError):
                gauge.remove(gate.stream)
        return
    gauges = _gate_gauges.get(gate.stream)
    if gauges is None:
        gauges = _gate_gauges[gate.stream] = tuple(
            gauge.labels(gate.stream)
            for gauge in (WATCH_IN_FLIGHT, WATCH_IN_FLIGHT_PEAK, WATCH_WAITING)
        )
    in_flight, peak, waiting = gauges
    in_flight.set(len(gate.in_flight))
    peak.set(gate.peak)
    waiting.set(gate.waiting)


# A schedule whose next fire is this late counts as overdue (it stopped firing).
OVERDUE_AFTER_SECONDS = 600


class LedgerCollector:
    """Schedules and fires from the database at scrape time. Per-schedule series (a label per
    schedule: cardinality grows with the schedules) only when `per_schedule` is set
    (WFCLOCK_SCHEDULE_METRICS)."""

    def __init__(self, engine, per_schedule: bool = False):
        self.engine = engine
        self.per_schedule = per_schedule

    def collect(self):
        from sqlalchemy import func, select

        from wfclock.db.store import fire_counts, schedule_fire_ages, skip_counts
        from wfclock.db.tables import workflow_schedules as t

        schedules = GaugeMetricFamily(
            "wfclock_schedules", "Schedules by trigger type and state", labels=["type", "state"]
        )
        fires = GaugeMetricFamily(
            "wfclock_fires", "Fires recorded in the ledger, by outcome", labels=["outcome", "type"]
        )
        skipped = GaugeMetricFamily(
            "wfclock_fires_skipped",
            "Clock fires that started no run, by reason (overlap, paused, missed, superseded ...)",
            labels=["reason"],
        )
        overdue = GaugeMetricFamily(
            "wfclock_schedules_overdue",
            f"Scheduled schedules whose next fire is more than {OVERDUE_AFTER_SECONDS}s late",
        )
        since = GaugeMetricFamily(
            "wfclock_schedule_seconds_since_last_fire",
            "Seconds since the schedule's last launched fire (WFCLOCK_SCHEDULE_METRICS)",
            labels=["namespace", "schedule"],
        )
        late = GaugeMetricFamily(
            "wfclock_schedule_next_fire_overdue_seconds",
            "How late the schedule's next fire is, 0 when not due (WFCLOCK_SCHEDULE_METRICS)",
            labels=["namespace", "schedule"],
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
            for reason, count in skip_counts(self.engine).items():
                skipped.add_metric([reason], count)
            ages = schedule_fire_ages(self.engine, datetime.now(UTC))
            overdue.add_metric([], sum(1 for *_, due in ages if due > OVERDUE_AFTER_SECONDS))
            if self.per_schedule:
                for namespace, name, age, due in ages:
                    if age is not None:
                        since.add_metric([namespace, name], age)
                    late.add_metric([namespace, name], due)
        except Exception as exc:  # noqa: BLE001 - a scrape must not fail with the database
            log.warning("metrics: database unavailable: %s", exc)
        yield schedules
        yield fires
        yield skipped
        yield overdue
        if self.per_schedule:
            yield since
            yield late


_registered: LedgerCollector | None = None


def register_ledger(engine, per_schedule: bool = False) -> None:
    global _registered
    if _registered is None:
        _registered = LedgerCollector(engine, per_schedule)
        REGISTRY.register(_registered)
    else:
        _registered.engine, _registered.per_schedule = engine, per_schedule
