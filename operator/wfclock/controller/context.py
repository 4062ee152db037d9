"""What every reconcile step works with: settings, the database, the Kubernetes surface, the
one-time release queue and the clock (injectable, as in kubebuilder's CronJob controller)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import Engine

from wfclock.controller.kube import Kube
from wfclock.controller.releases import ReleaseQueue
from wfclock.controller.resume import ResumeIndex
from wfclock.controller.tenants import TenantLogins
from wfclock.settings import Settings


def _wall_clock() -> datetime:
    return datetime.now(UTC)


@dataclass
class Context:
    settings: Settings
    engine: Engine
    kube: Kube
    releases: ReleaseQueue | None = None
    clock: Callable[[], datetime] = _wall_clock
    tenants: TenantLogins | None = None
    # The children as they stood when this process started (see `resume`); None: always write.
    resume: ResumeIndex | None = None
    # The next shifted fire (after a daylight-saving gap) of every schedule (`dstshift`).
    shifted: ReleaseQueue | None = None
    # Completed one-time schedules that opted in, each at its deletion time (`retention`).
    deletions: ReleaseQueue | None = None
    # CronJob uid: the generation whose spec was last judged for drift, without error (the
    # CronJob events' filter in `handlers`); trimmed by the resync to the CronJobs that exist.
    judged_cronjobs: dict[str, int | None] = field(default_factory=dict)

    def now(self) -> datetime:
        return self.clock()
