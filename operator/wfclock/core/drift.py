"""Whether what Kubernetes holds still matches what a schedule registered (level-triggered:
the desired state is re-derived from the state row and compared, whatever events were seen)."""

from __future__ import annotations

from datetime import datetime, timedelta

# A registration writes its new child before the state row that names it (and removes older
# children last): a child younger than this may be a registration still in flight.
STALE_CHILD_AGE = timedelta(seconds=60)


def cronjob_drift(row: dict, cronjob: dict | None) -> str | None:
    """Why a recurring schedule's CronJob (`None`: absent) differs from its registration."""
    if row["deleted_at"] is not None or row["trigger_type"] != "recurring":
        return None
    if row["status"] not in ("scheduled", "paused", "disabled"):
        return None
    if cronjob is None:
        return f"CronJob {row['registered_name']} is gone"
    spec = cronjob.get("spec") or {}
    suspend = row["status"] != "scheduled"
    if bool(spec.get("suspend")) != suspend:
        return f"CronJob {row['registered_name']} has suspend={bool(spec.get('suspend'))}"
    if row["status"] == "disabled":
        return None  # invalid: kept suspended as it is, whatever else it says
    if spec.get("schedule") != row["cron"] or spec.get("timeZone") != row["timezone"]:
        return (
            f"CronJob {row['registered_name']} runs {spec.get('schedule')!r} in "
            f"{spec.get('timeZone')}, not {row['cron']!r} in {row['timezone']}"
        )
    return None


def one_time_job_missing(row: dict, job: dict | None, fired: bool) -> str | None:
    """Why a pending one-time schedule needs its Job back: it is gone and its fire is not in
    the ledger (a Job whose fire is recorded is never made again)."""
    if row["deleted_at"] is not None or row["trigger_type"] != "schedule":
        return None
    if row["status"] not in ("scheduled", "paused") or fired or job is not None:
        return None
    return f"Job {row['registered_name']} is gone before its fire"


def stale_child(
    row: dict | None, kind: str, name: str, created: datetime | None, now: datetime
) -> str | None:
    """Why a CronJob or one-time Job should go: its live schedule registers another child (an
    operator that died between writing the state row and removing the older child leaves it
    behind). A child of a schedule without a live row, or too young to tell, is left alone: a
    deleted schedule's children go with it, and a new registration writes its row last."""
    if row is None or row["deleted_at"] is not None:
        return None
    if (row["registered_kind"], row["registered_name"]) == (kind, name):
        return None
    if created is None or now - created < STALE_CHILD_AGE:
        return None
    return f"{kind} {name} is no longer registered ({row['registered_kind']} {row['registered_name']} is)"
