"""kopf is configured from wfclock's settings: the bound on the schedules it handles at once and
on the size of its first list, which keep a restart's memory flat (docs/scale.md)."""

import kopf
import pytest
from wfclock.controller.handlers import WORKER_IDLE_SECONDS, configure_kopf
from wfclock.settings import Settings


def configured(**wf) -> kopf.OperatorSettings:
    settings = kopf.OperatorSettings()
    configure_kopf(settings, Settings(database_url="postgresql://u@db/wfclock", **wf))
    return settings


def test_by_default_kopf_handles_at_most_256_schedules_at_once_and_lists_500_per_request():
    settings = configured()
    assert settings.queueing.worker_limit == 256
    assert settings.queueing.idle_timeout == WORKER_IDLE_SECONDS
    assert settings.watching.chunk_size == 500


def test_the_bounds_are_settings():
    settings = configured(object_workers=8, list_chunk_size=50)
    assert (settings.queueing.worker_limit, settings.watching.chunk_size) == (8, 50)


def test_zero_leaves_kopfs_own_defaults():
    settings = configured(object_workers=0, list_chunk_size=0)
    defaults = kopf.OperatorSettings()
    assert settings.queueing.worker_limit is None
    assert settings.queueing.idle_timeout == defaults.queueing.idle_timeout
    assert settings.watching.chunk_size is None


@pytest.mark.parametrize("field", ["object_workers", "list_chunk_size"])
def test_a_negative_bound_is_refused_naming_the_setting(field):
    with pytest.raises(ValueError, match=field):
        Settings(database_url="postgresql://u@db/wfclock", **{field: -1})
