"""Whether what Kubernetes holds still matches what a schedule registered (level-triggered:
the desired state is re-derived from the state row and compared, whatever events were seen)."""

from __future__ import annotations


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
