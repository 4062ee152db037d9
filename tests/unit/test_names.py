"""Child names are deterministic and fit Kubernetes' limits."""

import uuid
from datetime import UTC, datetime

from wfclock.core.names import CRONJOB_NAME_MAX, JOB_NAME_MAX, cronjob_name, one_time_job_name

UID = str(uuid.UUID(int=7))


def test_cronjob_name_is_stable_and_leaves_room_for_the_controllers_suffix():
    assert cronjob_name("daily", UID) == cronjob_name("daily", UID)
    assert cronjob_name("daily", UID) != cronjob_name("daily", str(uuid.UUID(int=8)))
    assert len(cronjob_name("x" * 253, UID)) <= CRONJOB_NAME_MAX


def test_one_time_job_name_carries_unix_minutes_and_fits_63_characters():
    run_at = datetime(2026, 12, 1, 8, tzinfo=UTC)
    name = one_time_job_name("y" * 253, UID, run_at)
    assert len(name) <= JOB_NAME_MAX
    assert name.endswith(f"-{int(run_at.timestamp()) // 60}")
