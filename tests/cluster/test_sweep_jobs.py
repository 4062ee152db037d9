"""The accounting sweep reads the fire Jobs once a pass (one list), not once a fire, and never
lets that list record a fire missed while its Job may still deliver it; it posts one Event a
schedule for the fires it launched and one for those it recorded missed. Against a control plane
of the module's own (the Jobs' pods stay Pending: no node, so each Job stays active) and a
Postgres of its own."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from kubernetes import client, config
from wfclock.controller import accounting
from wfclock.controller.context import Context
from wfclock.controller.kube import Kube
from wfclock.core.fires import utc_iso
from wfclock.core.names import REGISTRATION_LABEL, SCHEDULE_UID_LABEL
from wfclock.db import store
from wfclock.settings import Settings
from wfclock_devstack.postgres import temporary_server

from ..conftest import make_state, migrated_database, serve_migrated
from .conftest import tenant_namespace

_names = iter(range(1000))


@pytest.fixture(scope="module")
def server():
    started = serve_migrated(temporary_server())
    yield started
    started.discard()


@pytest.fixture
def engine(server):
    with migrated_database(server, f"sweep{next(_names)}") as url:
        yield store.engine_for(url)


@pytest.fixture
def admin(plane):
    return config.new_client_from_config(config_file=str(plane.kubeconfig))


@pytest.fixture
def namespace(admin):
    yield from tenant_namespace(admin, f"sweep-{next(_names)}")


def every_minute(engine, namespace: str, name: str, minutes_back: int, **overrides) -> dict:
    """A schedule whose Jobs recorded none of its fires of the last `minutes_back` minutes."""
    published = datetime.now(UTC).replace(second=0, microsecond=0)
    published -= timedelta(minutes=minutes_back, seconds=-1)
    state = make_state(
        namespace=namespace,
        name=name,
        cron="* * * * *",
        timezone="UTC",
        registered_name=f"wfs-{name}",
        **{"starting_deadline_seconds": 60, **overrides},
    )
    store.upsert_schedule(engine, state, published_at=published)
    return store.get_schedule(engine, state.schedule_id)


def fire_job(row: dict, fire: datetime) -> dict:
    """The Job the CronJob controller makes for `fire` (its name and labels; a pod of its own)."""
    labels = {
        "app.kubernetes.io/managed-by": "wfclock",
        REGISTRATION_LABEL: "recurring-fire",
        SCHEDULE_UID_LABEL: str(row["schedule_id"]),
    }
    container = {"name": "launcher", "image": "wfclock:absent", "command": ["true"]}
    return {
        "metadata": {"name": accounting._fire_job_name(row, fire), "labels": labels},
        "spec": {
            "backoffLimit": 0,
            "template": {"spec": {"restartPolicy": "Never", "containers": [container]}},
        },
    }


def context(engine, kube: Kube, namespace: str) -> Context:
    return Context(Settings(database_url=str(engine.url), namespaces=[namespace]), engine, kube)


def minute(at: datetime) -> datetime:
    return at.replace(second=0, microsecond=0)


def test_a_job_created_after_the_sweeps_job_list_keeps_its_fire_from_being_missed(
    admin, engine, namespace
):
    """The list is taken when the sweep first needs it (a fire far past its deadline); a Job the
    CronJob controller creates right after it, for a fire whose deadline has not passed (a fire
    the policy `latest` records missed as superseded), must keep that fire owed; so must a Job
    the list shows active, for a fire long past its deadline."""
    row = every_minute(
        engine, namespace, "late", 8, missed_fires="latest", starting_deadline_seconds=300
    )
    now = datetime.now(UTC)
    old_fire = minute(now) - timedelta(minutes=7)  # past its deadline and the list's slack
    # The latest owed fire (60 s settle) launches; the one before it is superseded: recorded
    # missed, 2 to 3 minutes old, within its 300 s deadline.
    recent_fire = minute(now - timedelta(seconds=60)) - timedelta(minutes=1)
    batch = client.BatchV1Api(admin)
    batch.create_namespaced_job(namespace, fire_job(row, old_fire))
    listed = []

    class JobCreatedAfterTheList(Kube):
        def active_fire_jobs(self, namespaces):
            jobs = super().active_fire_jobs(namespaces)
            listed.append(sorted(jobs))
            batch.create_namespaced_job(namespace, fire_job(row, recent_fire))
            return jobs

    kube = JobCreatedAfterTheList(admin)
    accounting.sweep(context(engine, kube, namespace))
    kube._notices.shutdown(wait=True)
    assert listed == [[(namespace, accounting._fire_job_name(row, old_fire))]]
    fires = {f["scheduled_for"]: f for f in store.list_fires(engine, row["schedule_id"])}
    assert old_fire not in fires and recent_fire not in fires, {
        utc_iso(k): f["reason"] for k, f in fires.items()
    }
    assert any(f["reason"].startswith("missed") for f in fires.values())  # the others are
    accounted = store.get_schedule(engine, row["schedule_id"])["accounted_until"]
    assert accounted < old_fire


def test_a_failed_list_of_the_fire_jobs_is_never_trusted(admin, engine, namespace):
    """The list fails (a continue token expired, a timeout): each fire's Job is read on its own
    for the rest of the pass, so a fire long past its deadline whose Job still runs stays owed,
    in whichever schedule the pass reaches after the failure."""
    rows = [
        every_minute(
            engine, namespace, name, 8, missed_fires="latest", starting_deadline_seconds=60
        )
        for name in ("a", "b")
    ]
    old_fire = minute(datetime.now(UTC)) - timedelta(minutes=7)
    batch = client.BatchV1Api(admin)
    for row in rows:
        batch.create_namespaced_job(namespace, fire_job(row, old_fire))

    class ListFails(Kube):
        def active_fire_jobs(self, namespaces):
            raise client.ApiException(status=410, reason="Expired")

    kube = ListFails(admin)
    accounting.sweep(context(engine, kube, namespace))
    kube._notices.shutdown(wait=True)
    for row in rows:
        fires = {f["scheduled_for"] for f in store.list_fires(engine, row["schedule_id"])}
        assert old_fire not in fires, row["name"]
        assert store.get_schedule(engine, row["schedule_id"])["accounted_until"] < old_fire


def test_a_sweep_lists_the_fire_jobs_once_and_posts_an_event_a_schedule(admin, engine, namespace):
    """Ten minutes of fires beyond their deadline: one list of the Jobs where a GET of each
    missed fire's Job was made, one FireMissed Event a schedule naming each missed fire."""
    rows = [
        every_minute(
            engine, namespace, f"s{i}", 10, missed_fires="catchUp", catch_up_window_seconds=60
        )
        for i in range(3)
    ]
    kube = Kube(admin)
    calls = {"job_active": 0, "active_fire_jobs": 0}
    for name in calls:
        method = getattr(kube, name)

        def counted(*args, _method=method, _name=name):
            calls[_name] += 1
            return _method(*args)

        setattr(kube, name, counted)
    accounting.sweep(context(engine, kube, namespace))
    kube._notices.shutdown(wait=True)
    missed = {
        row["schedule_id"]: [
            f["scheduled_for"]
            for f in store.list_fires(engine, row["schedule_id"])
            if f["reason"] and f["reason"].startswith("missed")
        ]
        for row in rows
    }
    assert all(len(fires) >= 6 for fires in missed.values()), missed
    # Only fires within a minute of their deadline plus the list's slack are read one by one.
    assert calls["active_fire_jobs"] == 1 and calls["job_active"] <= 2 * len(rows), calls
    events = (
        client.CoreV1Api(admin)
        .list_namespaced_event(namespace, field_selector="reason=FireMissed")
        .items
    )
    assert len(events) == len(rows)
    for row in rows:
        (message,) = [e.message for e in events if e.involved_object.name == row["name"]]
        assert all(utc_iso(fire) in message for fire in missed[row["schedule_id"]]), message
