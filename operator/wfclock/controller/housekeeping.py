"""The operator's housekeeping: the fire ledger pruned to its retention, hourly, with jitter.

Every replica prunes (a standby too: pruning needs no Kubernetes object, and its batches are
serialised in Postgres by `store.PRUNE_LOCK`, so two replicas only take turns). A failed prune
is logged and tried again at the next interval.
"""

from __future__ import annotations

import logging
import random
import threading
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine

from wfclock.core.fires import utc_iso
from wfclock.db import store

log = logging.getLogger("wfclock.housekeeping")

FIRST_PRUNE_WITHIN_SECONDS = 60  # after start, so an operator restarted often still prunes


class LedgerPruner:
    def __init__(self, engine: Engine, retention_days: int, interval_seconds: float = 3600):
        self.engine = engine
        self.retention = timedelta(days=retention_days)
        self.interval = interval_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="ledger-pruner", daemon=True)

    def start(self) -> LedgerPruner:
        if self.retention:  # 0: never prune
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(30)

    def _loop(self) -> None:
        wait = min(self.interval, FIRST_PRUNE_WITHIN_SECONDS) * random.uniform(0.5, 1)
        while not self._stop.wait(wait):
            self.prune_once()
            wait = self.interval * random.uniform(0.9, 1.1)

    def prune_once(self) -> None:
        horizon = datetime.now(UTC) - self.retention
        try:
            pruned = store.prune_fires(self.engine, older_than=horizon, slack=store.HORIZON_SLACK)
        except Exception as exc:  # noqa: BLE001 - housekeeping must not stop the operator
            log.warning("ledger prune failed, retrying in %.0fs: %s", self.interval, exc)
            return
        if pruned.rows:
            log.info("pruned %d ledger rows of fires before %s", pruned.rows, utc_iso(horizon))
