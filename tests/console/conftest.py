"""The console against the real local control plane and a real Postgres: two namespaces (one a
user may see, one not), schedules registered by the real operator, fires and runs in the
ledger, ServiceAccount users bound to the built-in `edit` and `view` roles, the console as its
own process with its own narrow login, and Debian's Chromium driven by Playwright."""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import subprocess
import sys
import uuid
import zoneinfo
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
import yaml
from kubernetes import client
from wfclock.backfill import backfill
from wfclock.console.data import ensure_console_role
from wfclock.db.store import ScheduleState, engine_for, upsert_schedule
from wfclock.launcher import EventStart, ManualStart, launch
from wfclock_devstack.controlplane import ControlPlane
from wfclock_devstack.ports import free_port
from wfclock_devstack.processes import wait_until

from tests.cluster.conftest import WORKFLOW, Operator, api, crds  # noqa: F401
from tests.conftest import migrated_database


@pytest.fixture(scope="session")
def control_plane():
    """A control plane of the console tests' own: they run no launcher pod, so no node."""
    plane = ControlPlane().start()
    yield plane
    plane.remove()


ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "test-results" / "console"
AXE_LOCK = ROOT / "tests" / "console" / "axe" / "package-lock.json"
VISIBLE, HIDDEN = "console-acme", "console-globex"
OFFICE_CALENDAR = "office-days"
# The console's own rights, as the chart gives them (tests/cluster/test_console_chart.py).
CONSOLE_RULES = [
    {"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"], "verbs": ["create"]},
    {
        "apiGroups": ["authorization.k8s.io"],
        "resources": ["subjectaccessreviews"],
        "verbs": ["create"],
    },
]
VIEWER_ZONE = "Asia/Tokyo"  # the viewer's own zone, neither UTC nor a schedule's
ACME_WORKFLOW = uuid.UUID(WORKFLOW)


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/console" in str(item.fspath):
            item.add_marker(pytest.mark.browser)
            item.add_marker(pytest.mark.cluster)


def chromium_path() -> str:
    found = shutil.which("chromium")
    if not found:
        pytest.fail("Debian's chromium is missing: run `make deps` (scripts/ensure-browser.sh)")
    return found


def axe_script() -> Path:
    import hashlib

    digest = hashlib.sha1(AXE_LOCK.read_bytes()).hexdigest()[:12]
    cache = Path(os.environ.get("WFCLOCK_CACHE", Path.home() / ".cache" / "wfclock"))
    path = cache / "axe" / digest / "node_modules" / "axe-core" / "axe.min.js"
    if not path.exists():
        pytest.fail(f"axe-core is missing at {path}: run `make deps` (scripts/ensure-browser.sh)")
    return path


def schedule(name: str, tenant: str, trigger: dict, **spec) -> dict:
    return {
        "apiVersion": "wfclock.dev/v1alpha1",
        "kind": "WorkflowSchedule",
        "metadata": {"name": name},
        "spec": {
            "tenant": tenant,
            "workflowId": WORKFLOW,
            "workflowVersion": 1,
            "trigger": trigger,
            **spec,
        },
    }


def service_account_token(kube, namespace: str, user: str, role: str, *, cluster=False) -> str:
    """A token (TokenRequest, an hour) of a new ServiceAccount `user` in `namespace`, bound to the
    ClusterRole `role` in its namespace (or cluster-wide)."""
    rbac, core = client.RbacAuthorizationV1Api(kube), client.CoreV1Api(kube)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": user}})
    binding = {
        "metadata": {"name": f"{user}-{role}"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": [{"kind": "ServiceAccount", "name": user, "namespace": namespace}],
    }
    if cluster:
        rbac.create_cluster_role_binding(binding)
    else:
        rbac.create_namespaced_role_binding(namespace, binding)
    return core.create_namespaced_service_account_token(
        user, namespace, {"spec": {"expirationSeconds": 3600}}
    ).status.token


def _rbac(kube, namespace: str) -> dict[str, str]:
    """Roles as the chart makes them (aggregated into the built-in edit and view), a user bound
    to each in `namespace`, and a ServiceAccount token (TokenRequest) for each user."""
    rbac = client.RbacAuthorizationV1Api(kube)
    for suffix, verbs, label in (
        ("edit", ["get", "list", "watch", "create", "update", "patch", "delete"], "edit"),
        ("view", ["get", "list", "watch"], "view"),
    ):
        body = {
            "metadata": {
                "name": f"wfclock-console-test-{suffix}",
                "labels": {f"rbac.authorization.k8s.io/aggregate-to-{label}": "true"},
            },
            "rules": [
                {"apiGroups": ["wfclock.dev"], "resources": ["workflowschedules"], "verbs": verbs}
            ],
        }
        try:
            rbac.create_cluster_role(body)
        except client.ApiException as exc:
            if exc.status != 409:
                raise
    tokens = {
        role: service_account_token(kube, namespace, user, role)
        for user, role in (("alice", "edit"), ("victor", "view"))
    }
    # The aggregation controller folds the new rules into edit and view within moments.
    auth = client.AuthorizationV1Api(kube)

    def aggregated(verb: str, user: str) -> bool:
        review = auth.create_subject_access_review(
            {
                "spec": {
                    "user": f"system:serviceaccount:{namespace}:{user}",
                    "groups": ["system:serviceaccounts", f"system:serviceaccounts:{namespace}"],
                    "resourceAttributes": {
                        "namespace": namespace,
                        "verb": verb,
                        "group": "wfclock.dev",
                        "resource": "workflowschedules",
                    },
                }
            }
        )
        return review.status.allowed

    wait_until(
        lambda: aggregated("patch", "alice") and aggregated("list", "victor"),
        30,
        "edit/view aggregation",
    )
    return tokens


def _console_kubeconfig(kube, plane, path: Path) -> Path:
    """A kubeconfig for the console's own ServiceAccount, which may only create TokenReviews and
    SubjectAccessReviews (as the chart's console role)."""
    rbac = client.RbacAuthorizationV1Api(kube)
    rbac.create_cluster_role(
        {
            "metadata": {"name": "wfclock-console-test-reviewer"},
            "rules": CONSOLE_RULES,
        }
    )
    token = service_account_token(
        kube, VISIBLE, "console", "wfclock-console-test-reviewer", cluster=True
    )
    admin = yaml.safe_load(Path(plane.kubeconfig).read_text())
    cluster = admin["clusters"][0]["cluster"]
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "local", "cluster": cluster}],
                "users": [{"name": "console", "user": {"token": token}}],
                "contexts": [{"name": "local", "context": {"cluster": "local", "user": "console"}}],
                "current-context": "local",
            }
        )
    )
    return path


def start_console(env: dict, log: Path, scheme: str = "http", ca: Path | None = None):
    """`python -m wfclock.console` on a free port, once it answers: (process, url)."""
    import ssl
    import urllib.request

    port = free_port()
    console = subprocess.Popen(
        [sys.executable, "-m", "wfclock.console"],
        env={**env, "WFCLOCK_CONSOLE_PORT": str(port)},
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    url = f"{scheme}://127.0.0.1:{port}"
    context = ssl.create_default_context(cafile=str(ca)) if ca else None

    def up():
        assert console.poll() is None, log.read_text()
        with urllib.request.urlopen(f"{url}/healthz", timeout=2, context=context) as response:
            return response.status == 200

    try:
        wait_until(up, 30, "the console to answer")
    except BaseException:
        console.terminate()
        raise
    return console, url


class Stack:
    """What the browser tests see, and the admin's view to compare it with."""

    def __init__(self, **values):
        self.__dict__.update(values)


@pytest.fixture(scope="module")
def console_database(postgres):
    with migrated_database(postgres, f"console_{os.getpid()}") as url:
        yield url
    with psycopg.connect(postgres.url(), autocommit=True) as conn:
        conn.execute("DROP ROLE IF EXISTS wfclock_console_test")


@pytest.fixture(scope="module")
def stack(control_plane, api, crds, postgres, console_database, tmp_path_factory):  # noqa: F811
    core, objects = client.CoreV1Api(api), client.CustomObjectsApi(api)
    for namespace, tenant in ((VISIBLE, "acme"), (HIDDEN, "globex")):
        core.create_namespace(
            {"metadata": {"name": namespace, "labels": {"wfclock.dev/tenant": tenant}}}
        )
    core.create_namespaced_secret(
        VISIBLE,
        {
            "metadata": {"name": "wfclock-database"},
            "data": {"url": base64.b64encode(console_database.encode()).decode()},
        },
    )
    tmp = tmp_path_factory.mktemp("console")
    operator = Operator(
        control_plane,
        VISIBLE,
        {
            "WFCLOCK_DATABASE_URL": console_database,
            "WFCLOCK_MINIMUM_INTERVAL_MINUTES": "5",
            "WFCLOCK_EDITION": "enterprise",
            "WFCLOCK_METRICS_PORT": "0",
            "WFCLOCK_LAUNCHER_IMAGE": "wfclock:test",
            "WFCLOCK_DATABASE_SECRET_SOURCE": "",
        },
    ).start()
    console = None
    try:
        now = datetime.now(UTC)
        create = lambda ns, body: objects.create_namespaced_custom_object(  # noqa: E731
            "wfclock.dev", "v1alpha1", ns, "workflowschedules", body
        )
        create(
            VISIBLE,
            schedule(
                "hourly-report",
                "acme",
                {"type": "recurring", "cron": "15 * * * *", "timezone": "Europe/Berlin"},
            ),
        )
        create(
            VISIBLE,
            schedule(
                "quarter-hour",
                "acme",
                {"type": "recurring", "cron": "*/15 * * * *", "timezone": "America/New_York"},
            ),
        )
        # A calendar that closes the office on the day after tomorrow (Berlin), and a schedule
        # that uses it with a daylight-saving policy: the timeline shows that fire excluded.
        closed_day = (now + timedelta(days=2)).astimezone(zoneinfo.ZoneInfo("Europe/Berlin"))
        objects.create_namespaced_custom_object(
            "wfclock.dev", "v1alpha1", VISIBLE, "workflowcalendars",
            {
                "apiVersion": "wfclock.dev/v1alpha1", "kind": "WorkflowCalendar",
                "metadata": {"name": OFFICE_CALENDAR},
                "spec": {"dates": [{"date": f"{closed_day:%Y-%m-%d}", "name": "Company offsite"}]},
            },
        )  # fmt: skip
        create(
            VISIBLE,
            schedule(
                "office-close",
                "acme",
                {
                    "type": "recurring", "cron": "40 18 * * *", "timezone": "Europe/Berlin",
                    "dstPolicy": "RunOnceSkipMissing", "calendars": [OFFICE_CALENDAR],
                    "maxFires": 500, "jitter": "30s",
                },
            ),
        )  # fmt: skip
        run_at = (now + timedelta(days=2)).replace(microsecond=0)
        create(
            VISIBLE,
            schedule(
                "year-end-close",
                "acme",
                {"type": "schedule", "runAt": run_at.strftime("%Y-%m-%dT%H:%M:%SZ")},
            ),
        )
        hidden = create(
            HIDDEN,
            schedule(
                "globex-secret",
                "globex",
                {"type": "recurring", "cron": "0 3 * * *", "timezone": "Asia/Tokyo"},
            ),
        )

        def registered(name):
            obj = objects.get_namespaced_custom_object(
                "wfclock.dev", "v1alpha1", VISIBLE, "workflowschedules", name
            )
            return (obj.get("status") or {}).get("phase") == "Scheduled" and obj

        hourly = wait_until(lambda: registered("hourly-report"), 60, "hourly-report registered")
        for name in ("quarter-hour", "year-end-close"):
            wait_until(lambda n=name: registered(n), 60, f"{name} registered")
        # Registered with its calendar derived: the operator lists the closed day as excluded.
        wait_until(
            lambda: (registered("office-close") or {}).get("status", {}).get("excludedFires"),
            60,
            "office-close registered with its calendar",
        )
        # The operator watches only the visible namespace; the hidden one's schedule is in the
        # ledger as its own operator would have put it there.
        engine = engine_for(console_database)
        upsert_schedule(
            engine,
            ScheduleState(
                schedule_id=uuid.UUID(hidden["metadata"]["uid"]), tenant="globex", namespace=HIDDEN,
                name="globex-secret", workflow_id=ACME_WORKFLOW, workflow_version=1,
                trigger_type="recurring", run_at=None, cron="0 3 * * *", timezone="Asia/Tokyo",
                status="scheduled", missed_fires="latest", catch_up_window_seconds=3600, generation=1,
                registered_kind="CronJob", registered_name="wfs-globex-secret", next_fire_at=None,
            ),
            published_at=now - timedelta(days=2),
        )  # fmt: skip
        # Fires of the last hours in the ledger, each through the launcher (as a late delivery).
        uid = hourly["metadata"]["uid"]
        with psycopg.connect(console_database) as conn:
            conn.execute(
                "UPDATE workflow_schedules SET trigger_effective_from = now() - interval '5 hours',"
                " accounted_until = now() - interval '5 hours' WHERE schedule_id IN (%s, %s)",
                (uid, hidden["metadata"]["uid"]),
            )
        fired = backfill(console_database, uuid.UUID(uid), now - timedelta(hours=4), now)
        backfill(
            console_database, uuid.UUID(hidden["metadata"]["uid"]), now - timedelta(days=1), now
        )
        with psycopg.connect(console_database, autocommit=True) as conn:
            launch(
                conn,
                ManualStart("acme", ACME_WORKFLOW, 1, {"note": "by hand"}, "alice", "req-1"),
                now=now,
            )
            launch(
                conn,
                EventStart("acme", ACME_WORKFLOW, 1, "invoice.paid", "evt-42", {"invoice": 7}),
                now=now,
            )
            launch(
                conn,
                ManualStart("globex", ACME_WORKFLOW, 1, {"secret": "globex"}, "gail", "req-g"),
                now=now,
            )

        # The hour before the backfill's window is past its catch-up deadline: the operator's
        # accounting sweep records its fire as missed, and the status lists it among the
        # recent fires (the schedule page shows a missed fire beside the launched ones).
        wait_until(
            lambda: any(
                f.get("outcome") == "missed"
                for f in (registered("hourly-report") or {}).get("status", {}).get("recentFires")
                or []
            ),
            120,
            "hourly-report's status lists the fire before the backfill as missed",
        )
        tokens = _rbac(api, VISIBLE)
        ensure_console_role(engine, "wfclock_console_test", "console-pw")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("WFCLOCK_", "KUBECONFIG"))}
        env.update(
            WFCLOCK_CONSOLE_DATABASE_URL=console_database.replace(
                "postgres@", "wfclock_console_test:console-pw@"
            ),
            WFCLOCK_CONSOLE_KUBECONFIG=str(
                _console_kubeconfig(api, control_plane, tmp / "console.kubeconfig")
            ),
        )
        console, url = start_console(env, tmp / "console.log")
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        yield Stack(
            url=url,
            api=api,
            objects=objects,
            tokens=tokens,
            database_url=console_database,
            console_database_url=env["WFCLOCK_CONSOLE_DATABASE_URL"],
            hourly_uid=uid,
            fired=[f for f, outcome in fired if outcome.startswith("launched")],
            hidden_uid=hidden["metadata"]["uid"],
            log=tmp / "console.log",
            console_env=env,
            control_plane=control_plane,
            tmp=tmp,
        )
    finally:
        if console is not None:
            console.terminate()
            console.wait(10)
        operator.stop()
        rbac = client.RbacAuthorizationV1Api(api)
        for name in ("edit", "view", "reviewer"):
            with contextlib.suppress(client.ApiException):
                rbac.delete_cluster_role(f"wfclock-console-test-{name}")
        with contextlib.suppress(client.ApiException):
            rbac.delete_cluster_role_binding("wfclock-console-test-reviewer")
        for namespace in (VISIBLE, HIDDEN):
            core.delete_namespace(namespace)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=chromium_path(), args=["--no-sandbox"]
        )
        yield launched
        launched.close()


@pytest.fixture
def page(browser):
    # bypass_csp: only so the test can inject axe-core; the console's own pages load no
    # script but its own.
    context = browser.new_context(
        viewport={"width": 1400, "height": 900}, bypass_csp=True, timezone_id=VIEWER_ZONE
    )
    opened = context.new_page()
    yield opened
    context.close()


def sign_in(page, url: str, token: str) -> None:
    page.goto(f"{url}/login")
    page.fill("#token", token)
    page.click("button[type=submit]")
    page.wait_for_url(f"{url}/")


def user_client(kube, token: str) -> client.ApiClient:
    base = kube.configuration
    configuration = client.Configuration()
    configuration.host, configuration.ssl_ca_cert = base.host, base.ssl_ca_cert
    configuration.api_key = {"authorization": token}
    configuration.api_key_prefix = {"authorization": "Bearer"}
    return client.ApiClient(configuration)
