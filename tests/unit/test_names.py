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


def test_a_schedule_name_fits_a_label_value_whatever_its_length():
    import re

    from wfclock.core.names import LABEL_VALUE_MAX, schedule_label_value

    label_value = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
    for name in ("a", "daily", "x" * 63, "x" * 64, "a.b-" * 60 + "c", "z" * 253):
        value = schedule_label_value(name)
        assert len(value) <= LABEL_VALUE_MAX and label_value.match(value), (name, value)
    assert schedule_label_value("daily") == "daily"  # short names stay readable and unchanged
    assert schedule_label_value("x" * 63) == "x" * 63
    # Long names that share a prefix still get different values.
    assert schedule_label_value("p" * 100 + "-a") != schedule_label_value("p" * 100 + "-b")
