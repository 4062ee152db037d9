"""`wfclock`: the command line for people (and `wfclock db upgrade` for deployments).

Exit codes: 0 success, 1 a validation that found problems, 2 unusable input, 75 database
unreachable (worth a retry).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

EX_OK, EX_INVALID, EX_USAGE, EX_TEMPFAIL = 0, 1, 2, 75


class UsageError(Exception):
    """Unusable input; the message says which and what is accepted."""


def _uuid(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a UUID") from None


def _instant(text: str) -> datetime:
    from wfclock.core.fires import parse_instant

    try:
        return parse_instant(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an RFC 3339 timestamp with an offset, e.g. 2026-03-08T14:00:00Z"
        ) from None


def _database_url(args) -> str:
    url = args.database_url or os.environ.get("WFCLOCK_DATABASE_URL", "")
    if not url:
        raise UsageError("no database: pass --database-url or set WFCLOCK_DATABASE_URL")
    from sqlalchemy.engine import make_url

    from wfclock.db.urls import sqlalchemy_url

    try:
        make_url(sqlalchemy_url(url))
    except Exception as exc:  # noqa: BLE001 - any parse failure is the same user error
        raise UsageError(f"database URL is not usable: {exc}") from None
    return url


def _engine(args):
    from wfclock.db.store import engine_for

    return engine_for(_database_url(args))


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    return str(value)


def _table(rows: list[list[str]], headers: list[str]) -> str:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


def _json_default(value):
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return str(value)


# --- commands ---------------------------------------------------------------------------------


def cmd_db(args) -> int:
    from wfclock.db import migrate

    url = _database_url(args)
    if args.db_command == "upgrade":
        newer = migrate.upgrade(url, args.revision)
        if newer:
            print(
                f"database at revision {', '.join(newer)}, newer than this wfclock "
                f"(head {', '.join(migrate.heads(url))}): left as it is, as after a rollback"
            )
        else:
            print(f"database upgraded to {args.revision}")
        return EX_OK
    if not args.revision:
        raise UsageError(
            "name the revision to downgrade to (base, or a revision such as 0001). Downgrading "
            "to base drops every table, the fire ledger included, after which old fire keys "
            "could be claimed again; it needs `wfclock db downgrade base "
            f"{migrate.LEDGER_LOSS_FLAG}`"
        )
    try:
        migrate.downgrade(url, args.revision, allow_ledger_loss=args.allow_ledger_loss)
    except ValueError as exc:  # LedgerLossRefused or an unknown revision
        raise UsageError(str(exc)) from None
    print(f"database downgraded to {args.revision}")
    return EX_OK


def cmd_db_prune(args) -> int:
    from wfclock.core.fires import utc_iso
    from wfclock.db.store import prune_fires
    from wfclock.settings import Settings, check_ledger_retention

    days = args.retention_days
    if days is None:
        days = Settings().ledger_retention_days
    try:
        check_ledger_retention(days)
    except ValueError as exc:
        raise UsageError(f"--retention-days {days}: {exc}") from None
    if days == 0:
        print("ledger retention is 0 (never prune): nothing pruned")
        return EX_OK
    horizon = datetime.now(UTC) - timedelta(days=days)
    pruned = prune_fires(_engine(args), older_than=horizon, dry_run=args.dry_run)
    before = utc_iso(horizon.replace(microsecond=0))
    if args.dry_run:
        print(
            f"{pruned.rows} ledger row(s) would be pruned: fires before {before} "
            "(each schedule's latest fire is kept)"
        )
    else:
        print(
            f"pruned {pruned.rows} ledger row(s): fires before {before}, each schedule's latest "
            "kept; fires before it are never launched from now on"
        )
    return EX_OK


def cmd_runs_list(args) -> int:
    from wfclock.core.model import trigger_label
    from wfclock.db.store import list_runs

    runs = list_runs(
        _engine(args),
        tenant=args.tenant,
        workflow_id=args.workflow,
        trigger_type=args.trigger_type,
        limit=args.limit,
    )
    if args.json:
        print(json.dumps(runs, default=_json_default, indent=2))
        return EX_OK
    rows = [
        [
            str(r["run_id"]),
            r["tenant"],
            str(r["workflow_id"]),
            str(r["workflow_version"]),
            trigger_label(r["trigger_type"], r["trigger_metadata"]),
            r["status"],
            _fmt(r["payload"].get("scheduledFor") if isinstance(r["payload"], dict) else None),
            _fmt(r["created_at"]),
        ]
        for r in runs
    ]
    headers = [
        "RUN",
        "TENANT",
        "WORKFLOW",
        "VERSION",
        "TRIGGER",
        "STATUS",
        "SCHEDULED FOR",
        "CREATED",
    ]
    print(_table(rows, headers))
    return EX_OK


def cmd_schedules(args) -> int:
    from wfclock.db.store import list_schedules

    schedules = list_schedules(_engine(args), tenant=args.tenant)
    if args.json:
        print(json.dumps(schedules, default=_json_default, indent=2))
        return EX_OK
    rows = [
        [
            f"{s['namespace']}/{s['name']}",
            s["tenant"],
            "One-time" if s["trigger_type"] == "schedule" else "Recurring",
            _fmt(s["run_at"]) if s["trigger_type"] == "schedule" else s["cron"],
            s["timezone"],
            s["status"] + (" (deleted)" if s["deleted_at"] else ""),
            f"{s['registered_kind'] or '-'}/{s['registered_name'] or '-'}",
            _fmt(s["next_fire_at"]),
            _fmt(s["last_fire_at"]),
            _fmt(s["last_run_status"]),
        ]
        for s in schedules
    ]
    headers = [
        "SCHEDULE",
        "TENANT",
        "TYPE",
        "WHEN",
        "TIMEZONE",
        "STATE",
        "REGISTERED",
        "NEXT FIRE",
        "LAST FIRE",
        "LAST RESULT",
    ]
    print(_table(rows, headers))
    return EX_OK


def cmd_validate(args) -> int:
    import yaml

    from wfclock.core.model import Rules, SpecError, validate_spec
    from wfclock.settings import Settings

    settings = Settings()
    try:
        documents = [d for d in yaml.safe_load_all(Path(args.file).read_text()) if d]
    except (OSError, yaml.YAMLError) as exc:
        raise UsageError(f"cannot read {args.file}: {exc}") from None
    rules = Rules(
        now=args.now or datetime.now(UTC),
        edition=settings.edition,
        minimum_interval=timedelta(minutes=settings.minimum_interval_minutes),
    )
    from wfclock.core.calendars import validate_calendar

    failed = 0
    for doc in documents:
        name = f"{doc.get('kind', '?')}/{(doc.get('metadata') or {}).get('name', '?')}"
        if doc.get("kind") not in ("WorkflowSchedule", "WorkflowCalendar"):
            print(f"{name}: skipped (not a WorkflowSchedule or WorkflowCalendar)")
            continue
        try:
            if doc["kind"] == "WorkflowCalendar":
                validate_calendar(doc.get("spec") or {})
            else:
                validate_spec(doc.get("spec") or {}, rules)
            print(f"{name}: valid")
        except SpecError as exc:
            failed += 1
            for problem in exc.problems:
                print(f"{name}: {problem}")
    return EX_INVALID if failed else EX_OK


def cmd_preview(args) -> int:
    from wfclock.core.firetime import CronError, parse_cron, zone
    from wfclock.core.nextfires import policy_next_fires_view

    try:
        spec = parse_cron(args.cron)
        zone(args.timezone)
    except CronError as exc:
        raise UsageError(str(exc)) from None
    start = args.start or datetime.now(UTC)
    if args.calendar:
        return _preview_with_calendars(args, spec, start)
    views = policy_next_fires_view(spec, args.timezone, args.dst_policy, start, args.count)
    for fire in views:
        print(
            f"{fire['local']}  {fire['at']}" + (f"  ({fire['note']})" if fire.get("note") else "")
        )
    return EX_OK


def _preview_with_calendars(args, spec, start: datetime) -> int:
    """The fires that run under the WorkflowCalendars in the given files (derived as the
    operator does, with the pinned holidays package), and the ones their dates exclude."""
    import yaml

    from wfclock.core.calendars import derive_calendar, fire_refusal, validate_calendar
    from wfclock.core.model import SpecError
    from wfclock.core.nextfires import next_fires_under_policy

    calendars = {}
    for path in args.calendar:
        try:
            documents = [d for d in yaml.safe_load_all(Path(path).read_text()) if d]
        except (OSError, yaml.YAMLError) as exc:
            raise UsageError(f"cannot read {path}: {exc}") from None
        for doc in documents:
            if doc.get("kind") != "WorkflowCalendar":
                continue
            name = (doc.get("metadata") or {}).get("name", "?")
            try:
                parsed = validate_calendar(doc.get("spec") or {})
            except SpecError as exc:
                raise UsageError(f"WorkflowCalendar/{name}: {exc}") from None
            calendars[name] = derive_calendar(parsed, start.date())
    if not calendars:
        raise UsageError(f"no WorkflowCalendar in {', '.join(args.calendar)}")
    names = sorted(calendars)
    shown, excluded = next_fires_under_policy(
        spec,
        args.timezone,
        start,
        args.count,
        lambda fire: fire_refusal(names, calendars, args.timezone, fire),
    )
    lines = [(f["at"], f"{f['local']}  {f['at']}", f.get("note")) for f in shown]
    lines += [(f["at"], f"{f['local']}  {f['at']}", f"excluded: {f['reason']}") for f in excluded]
    for _, line, note in sorted(lines):
        print(line + (f"  ({note})" if note else ""))
    return EX_OK


def cmd_backfill(args) -> int:
    from wfclock.backfill import FiresPruned, backfill

    if args.end <= args.begin:
        raise UsageError("--to must be after --from")
    try:
        results = backfill(
            _database_url(args), args.schedule, args.begin, args.end, dry_run=args.dry_run
        )
    except FiresPruned as exc:
        raise UsageError(str(exc)) from None
    for fire, result in results:
        print(f"{fire.astimezone(UTC).isoformat().replace('+00:00', 'Z')}  {result}")
    print(
        f"{len(results)} fire(s) in the window"
        + (" (dry run: nothing launched)" if args.dry_run else "")
    )
    return EX_OK


def cmd_start(args) -> int:
    import psycopg

    from wfclock.launcher import EventStart, InvalidStart, ManualStart, launch

    try:
        payload = json.loads(args.payload)
    except json.JSONDecodeError as exc:
        raise UsageError(f"--payload is not JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise UsageError("--payload must be a JSON object")
    if args.kind == "event":
        if not args.event_id or not args.event_name:
            raise UsageError("an event start needs --event-name and --event-id")
        request = EventStart(
            args.tenant, args.workflow, args.version, args.event_name, args.event_id, payload
        )
    else:
        if not args.request_id:
            raise UsageError(
                "a manual start needs --request-id: an id of your choosing (a UUID, a ticket "
                "number) that makes a retried command after an uncertain result one run"
            )
        request = ManualStart(
            args.tenant,
            args.workflow,
            args.version,
            payload,
            os.environ.get("USER", ""),
            request_id=args.request_id,
        )
    from wfclock.db.urls import libpq_url

    try:
        with psycopg.connect(libpq_url(_database_url(args))) as conn:
            result = launch(conn, request, now=datetime.now(UTC))
    except InvalidStart as exc:
        raise UsageError(str(exc)) from None
    print(result.as_json())
    return EX_OK


def cmd_db_console_role(args) -> int:
    import re

    from wfclock.console.data import READABLE, ensure_console_role

    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", args.login):
        raise UsageError(
            f"login {args.login!r}: use lower-case letters, digits and _ (at most 63, not "
            "starting with a digit), e.g. wfclock_console"
        )
    password = os.environ.get(args.password_env, "")
    if not password:
        raise UsageError(f"${args.password_env} is empty: it holds the login's password")
    ensure_console_role(_engine(args), args.login, password)
    tables = "; ".join(f"{t}: {', '.join(c)}" for t, c in READABLE.items())
    print(f"console login {args.login}: read-only, SELECT on {tables}")
    return EX_OK


def cmd_console(args) -> int:
    from wfclock.console.__main__ import main as console_main

    if args.port is not None:
        os.environ["WFCLOCK_CONSOLE_PORT"] = str(args.port)
    if args.host:
        os.environ["WFCLOCK_CONSOLE_HOST"] = args.host
    return console_main()


def cmd_run_now(args) -> int:
    """Sets the schedule's `wfclock.dev/run-now` annotation (the operator starts the run) and,
    with --wait, prints the operator's answer from `status.runNow`."""
    import time

    from kubernetes import client, config
    from kubernetes.client.rest import ApiException

    from wfclock.core.model import API_GROUP, API_VERSION, PLURAL
    from wfclock.core.runcontrol import RUN_NOW_ANNOTATION, request_id_problem

    request_id = args.id or f"cli-{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"
    problem = request_id_problem(request_id)
    if problem:
        raise UsageError(f"--id: {problem}")
    try:
        config.load_kube_config(config_file=os.environ.get("KUBECONFIG"))
    except config.ConfigException:
        config.load_incluster_config()
    objects = client.CustomObjectsApi()
    namespace = args.namespace or _current_namespace()
    where = (API_GROUP, API_VERSION, namespace, PLURAL, args.schedule)
    try:
        objects.patch_namespaced_custom_object(
            *where,
            {"metadata": {"annotations": {RUN_NOW_ANNOTATION: request_id}}},
            field_manager=f"wfclock-cli-{os.environ.get('USER') or 'unknown'}",
        )
    except ApiException as exc:
        if exc.status == 404:
            message = f"no WorkflowSchedule {args.schedule!r} in namespace {namespace!r}"
            raise UsageError(message) from None
        raise
    print(f"{namespace}/{args.schedule}: run-now {request_id} requested")
    deadline = time.monotonic() + args.wait
    while time.monotonic() < deadline:
        answer = (objects.get_namespaced_custom_object(*where).get("status") or {}).get("runNow")
        if answer and answer.get("requestId") == request_id:
            print(json.dumps(answer))
            return EX_OK if answer.get("outcome") in ("launched", "duplicate") else 1
        time.sleep(0.5)
    if args.wait:
        print(f"wfclock: no answer from the operator within {args.wait}s", file=sys.stderr)
        return EX_TEMPFAIL
    return EX_OK


def cmd_crd_migrate_storage(args) -> int:
    """Re-writes every WorkflowSchedule in the CRD's storage version, then trims its
    status.storedVersions to that version (docs/day-two.md)."""
    from kubernetes import client, config

    from wfclock.controller.storageversion import MigrationError, migrate_storage

    try:
        config.load_kube_config(config_file=os.environ.get("KUBECONFIG"))
    except config.ConfigException:
        config.load_incluster_config()
    try:
        migration = migrate_storage(client.ApiClient())
    except MigrationError as exc:
        print(f"wfclock: storage migration not finished: {exc}", file=sys.stderr)
        return 1
    print(migration.line())
    return EX_OK


def _current_namespace() -> str:
    from kubernetes import config

    try:
        _, context = config.list_kube_config_contexts(config_file=os.environ.get("KUBECONFIG"))
        return context["context"].get("namespace") or "default"
    except (config.ConfigException, KeyError, TypeError):
        return "default"


def build_parser() -> argparse.ArgumentParser:
    from wfclock.core.dst import DST_POLICIES

    parser = argparse.ArgumentParser(prog="wfclock", description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="default: $WFCLOCK_DATABASE_URL")
    sub = parser.add_subparsers(dest="command", required=True)

    db = sub.add_parser("db", help="database migrations and the fire ledger")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    upgrade = db_sub.add_parser("upgrade", help="apply migrations (default: to head)")
    upgrade.add_argument("revision", nargs="?", default="head")
    upgrade.set_defaults(func=cmd_db)
    downgrade = db_sub.add_parser(
        "downgrade", help="undo migrations; below 0002 needs a loud flag (the fire ledger goes)"
    )
    downgrade.add_argument("revision", nargs="?", help="base, or a revision such as 0001")
    downgrade.add_argument(
        "--i-understand-this-deletes-the-fire-ledger",
        dest="allow_ledger_loss",
        action="store_true",
        help="allow a downgrade that drops the fire ledger or its pruning guard",
    )
    downgrade.set_defaults(func=cmd_db)
    prune = db_sub.add_parser(
        "prune", help="delete ledger rows of old fires (each schedule's latest is kept)"
    )
    prune.add_argument(
        "--retention-days",
        type=int,
        help="keep fires of the last N days (default: $WFCLOCK_LEDGER_RETENTION_DAYS, 90)",
    )
    prune.add_argument("--dry-run", action="store_true", help="count, delete nothing")
    prune.set_defaults(func=cmd_db_prune)
    console_role = db_sub.add_parser(
        "console-role", help="create or update the console's read-only login (idempotent)"
    )
    console_role.add_argument("login", help="role name, e.g. wfclock_console")
    console_role.add_argument(
        "--password-env",
        default="WFCLOCK_CONSOLE_DB_PASSWORD",
        help="environment variable holding its password (default: %(default)s)",
    )
    console_role.set_defaults(func=cmd_db_console_role)

    console = sub.add_parser(
        "console",
        help="serve the web console (as python -m wfclock.console; settings WFCLOCK_CONSOLE_*)",
    )
    console.add_argument("--host", help="default: $WFCLOCK_CONSOLE_HOST or 127.0.0.1")
    console.add_argument("--port", type=int, help="default: $WFCLOCK_CONSOLE_PORT or 8090")
    console.set_defaults(func=cmd_console)

    runs = sub.add_parser("runs", help="workflow runs")
    runs_sub = runs.add_subparsers(dest="runs_command", required=True)
    runs_list = runs_sub.add_parser("list", help="list runs, newest first")
    runs_list.add_argument("--tenant")
    runs_list.add_argument("--workflow", type=_uuid, help="workflow id")
    runs_list.add_argument(
        "--trigger-type",
        choices=["event", "schedule", "recurring", "manual"],
        help="the run's real trigger type (schedule = one-time)",
    )
    runs_list.add_argument("--limit", type=int, default=100)
    runs_list.add_argument("--json", action="store_true")
    runs_list.set_defaults(func=cmd_runs_list)

    schedules = sub.add_parser("schedules", help="schedule state rows")
    schedules.add_argument("--tenant")
    schedules.add_argument("--json", action="store_true")
    schedules.set_defaults(func=cmd_schedules)

    validate = sub.add_parser("validate", help="check WorkflowSchedule manifests offline")
    validate.add_argument("file")
    validate.add_argument(
        "--now", type=_instant, help="evaluate 'in the future' against this instant"
    )
    validate.set_defaults(func=cmd_validate)

    preview = sub.add_parser("preview", help="next fire times of a cron in a zone")
    preview.add_argument("--cron", required=True)
    preview.add_argument("--timezone", required=True)
    preview.add_argument("--count", type=int, default=5)
    preview.add_argument(
        "--dst-policy",
        choices=DST_POLICIES,
        default="Kubernetes",
        help="the schedule's spec.trigger.dstPolicy (default Kubernetes: the CronJob's own fires)",
    )
    preview.add_argument("--from", dest="start", type=_instant)
    preview.add_argument(
        "--calendar",
        action="append",
        metavar="FILE",
        help="a file of WorkflowCalendars whose excluded dates the fires skip (repeatable)",
    )
    preview.set_defaults(func=cmd_preview)

    backfill = sub.add_parser("backfill", help="launch every fire a schedule had in a window, once")
    backfill.add_argument("schedule", type=_uuid, help="schedule id (the resource's UID)")
    backfill.add_argument("--from", dest="begin", type=_instant, required=True)
    backfill.add_argument("--to", dest="end", type=_instant, required=True, help="exclusive")
    backfill.add_argument("--dry-run", action="store_true")
    backfill.set_defaults(func=cmd_backfill)

    start = sub.add_parser("start", help="start a run by hand or for an event (same launcher)")
    start.add_argument("kind", choices=["manual", "event"])
    start.add_argument("--tenant", required=True)
    start.add_argument("--workflow", type=_uuid, required=True)
    start.add_argument("--version", type=int, required=True)
    start.add_argument("--payload", default="{}")
    start.add_argument("--event-name")
    start.add_argument("--event-id", help="events are deduplicated on it")
    start.add_argument(
        "--request-id", help="manual starts: retrying with the same id starts one run only"
    )
    start.set_defaults(func=cmd_start)

    run_now = sub.add_parser(
        "run-now", help="start one run of a schedule now (sets its wfclock.dev/run-now annotation)"
    )
    run_now.add_argument("schedule", help="the WorkflowSchedule's name")
    run_now.add_argument("-n", "--namespace", help="default: the kubeconfig context's")
    run_now.add_argument(
        "--id", help="request id (default: cli-<UTC time>-<random>); the same id runs once"
    )
    run_now.add_argument(
        "--wait", type=float, default=30, help="seconds to wait for the answer (0: do not wait)"
    )
    run_now.set_defaults(func=cmd_run_now)

    crd = sub.add_parser("crd", help="the WorkflowSchedule CRD's versions")
    crd_sub = crd.add_subparsers(dest="crd_command", required=True)
    migrate = crd_sub.add_parser(
        "migrate-storage",
        help="re-write every WorkflowSchedule in the CRD's storage version, then drop the "
        "other versions from status.storedVersions",
    )
    migrate.set_defaults(func=cmd_crd_migrate_storage)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except UsageError as exc:
        print(f"wfclock: {exc}", file=sys.stderr)
        return EX_USAGE
    except Exception as exc:
        import psycopg
        from sqlalchemy.exc import OperationalError as SAOperationalError

        if isinstance(exc, SAOperationalError | psycopg.OperationalError):
            print(f"wfclock: database unavailable: {str(exc).splitlines()[0]}", file=sys.stderr)
            return EX_TEMPFAIL
        from wfclock.launcher import UnknownSchedule

        if isinstance(exc, UnknownSchedule | LookupError):
            print(f"wfclock: {exc}", file=sys.stderr)
            return EX_USAGE
        raise


if __name__ == "__main__":
    sys.exit(main())
