"""Every panel of the chart's Grafana dashboard queries a metric the operator exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

from wfclock.controller import metrics

DASHBOARD = (
    Path(__file__).resolve().parents[2] / "charts" / "wfclock" / "dashboards" / "wfclock.json"
)


def exported_series() -> set[str]:
    """The series names the operator's /metrics can carry (counters as _total, histograms as
    _bucket/_sum/_count), from its own metric objects and the ledger collector."""
    families = [
        *metrics.RECONCILES.collect(),
        *metrics.RELEASE_LAG.collect(),
        *metrics.MISSED.collect(),
        *metrics.LedgerCollector(engine=None).collect(),  # no database: empty families
    ]
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"], "gauge": [""]}
    return {f.name + s for f in families for s in suffixes[f.type]}


def test_every_panel_queries_only_metrics_the_operator_exports():
    dashboard = json.loads(DASHBOARD.read_text())
    exported = exported_series()
    assert dashboard["panels"]
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            used = set(re.findall(r"\bwfclock_[a-z_]+", target["expr"]))
            assert used, f"{panel['title']}: {target['expr']} queries no wfclock metric"
            assert used <= exported, f"{panel['title']}: {sorted(used - exported)} not exported"


def test_the_dashboard_covers_fires_by_outcome_and_reason_release_lag_errors_and_schedules():
    exprs = " ".join(
        t["expr"] for p in json.loads(DASHBOARD.read_text())["panels"] for t in p["targets"]
    )
    for series in (
        "wfclock_fires",
        "wfclock_fires_skipped",
        "wfclock_one_time_release_lag_seconds_bucket",
        "wfclock_reconciles_total",
        "wfclock_schedules",
    ):
        assert series in exprs
