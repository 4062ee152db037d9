"""kopf is configured from wfclock's settings: the size of the pages of its first list, and an
optional bound on the schedules it handles at once, which lowers a restart's memory peak
(docs/scale.md)."""

import kopf
import pytest
from wfclock.controller import backpressure
from wfclock.controller.handlers import WORKER_IDLE_SECONDS, configure_kopf
from wfclock.settings import Settings


def configured(**wf) -> kopf.OperatorSettings:
    settings = kopf.OperatorSettings()
    try:
        configure_kopf(settings, Settings(database_url="postgresql://u@db/wfclock", **wf))
        settings.events_in_flight = backpressure._limit  # what the gate was installed with
    finally:
        backpressure.uninstall()
    return settings


def test_by_default_kopf_is_handed_at_most_128_events_of_a_watch_stream_at_once():
    assert configured().events_in_flight == 128
    assert configured(events_in_flight=7).events_in_flight == 7
    assert configured(events_in_flight=0).events_in_flight == 0


def test_by_default_kopf_lists_500_per_request_and_its_workers_are_not_bounded():
    settings = configured()
    assert settings.watching.chunk_size == 500
    assert settings.queueing.worker_limit is None
    assert settings.queueing.idle_timeout == kopf.OperatorSettings().queueing.idle_timeout


def test_a_bound_on_the_workers_frees_a_slot_soon_after_a_schedules_last_event():
    settings = configured(object_workers=256)
    assert settings.queueing.worker_limit == 256
    assert settings.queueing.idle_timeout == WORKER_IDLE_SECONDS


def test_the_bounds_are_settings():
    settings = configured(object_workers=8, list_chunk_size=50)
    assert (settings.queueing.worker_limit, settings.watching.chunk_size) == (8, 50)


def test_zero_leaves_kopfs_own_defaults():
    settings = configured(object_workers=0, list_chunk_size=0)
    defaults = kopf.OperatorSettings()
    assert settings.queueing.worker_limit is None
    assert settings.queueing.idle_timeout == defaults.queueing.idle_timeout
    assert settings.watching.chunk_size is None


@pytest.mark.parametrize("field", ["object_workers", "list_chunk_size", "events_in_flight"])
def test_a_negative_bound_is_refused_naming_the_setting(field):
    with pytest.raises(ValueError, match=field):
        Settings(database_url="postgresql://u@db/wfclock", **{field: -1})
