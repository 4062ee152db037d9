"""The kopf operator: thin handlers over `reconciler`, which does the work.

Run with `python -m wfclock.controller` (or `kopf run -m wfclock.controller.handlers`).
Errors of the Kubernetes API or the database are temporary (retried after a short delay, the
Ready condition says so); anything else is a bug and surfaces as kopf reports it, with its
traceback, retried only after kopf's backoff.
"""

from __future__ import annotations

import functools
import logging
import os
import threading

import kopf
import psycopg
import sqlalchemy.exc
import urllib3.exceptions
from kubernetes import client, config
from kubernetes.client.rest import ApiException
from prometheus_client import start_http_server

from wfclock import tracing
from wfclock.controller import (
    accounting,
    backpressure,
    calendars,
    drift,
    dstshift,
    freememory,
    housekeeping,
    idle_events,
    metrics,
    onetime,
    reconciler,
    retention,
)
from wfclock.controller.context import Context
from wfclock.controller.kube import Kube, TimedApiClient
from wfclock.controller.periodic import Periodic
from wfclock.controller.releases import ReleaseQueue
from wfclock.controller.resume import ResumeIndex
from wfclock.controller.tenants import TenantLogins
from wfclock.core.calendars import CALENDAR_PLURAL
from wfclock.core.fires import parse_instant
from wfclock.core.model import API_GROUP, API_VERSION, PLURAL
from wfclock.core.names import REGISTRATION_LABEL, SCHEDULE_UID_LABEL
from wfclock.core.runcontrol import RUN_NOW_ANNOTATION
from wfclock.core.status import error_condition
from wfclock.db.store import engine_for
from wfclock.settings import Settings

RESOURCE = (API_GROUP, API_VERSION, PLURAL)
CALENDAR = (API_GROUP, API_VERSION, CALENDAR_PLURAL)
# A calendar is derived again this often (a new year's horizon, a new holidays package).
CALENDAR_REFRESH_SECONDS = 6 * 3600
log = logging.getLogger("wfclock.operator")
_metrics_started = threading.Event()


WORKERS = 32  # handler threads, and HTTP connections to the API server to match
RELEASE_WORKERS = 16  # threads that release due one-time Jobs
WORKER_IDLE_SECONDS = 0.5  # with a bound on kopf's per-object workers (Settings.object_workers)
RETRY_DELAY_SECONDS = 10  # after an API or database error
# Connections one replica holds at most (pool plus 5 overflow): handler threads wait their turn
# rather than crowd the database, whose slots the fires' launchers need at the top of the hour.
DATABASE_CONNECTIONS = 15
# Failures of what the operator talks to: worth a retry, unlike a bug.
TEMPORARY_ERRORS = (
    ApiException,
    urllib3.exceptions.HTTPError,
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    psycopg.OperationalError,
    ConnectionError,
    TimeoutError,
)


def _api_client() -> client.ApiClient:
    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)
    except config.ConfigException:
        config.load_kube_config(
            config_file=os.environ.get("KUBECONFIG"), client_configuration=configuration
        )
    configuration.connection_pool_maxsize = WORKERS
    return TimedApiClient(configuration)


class SlimStatusDiffBase(kopf.StatusDiffBaseStorage):
    """kopf's record of the last handled spec, in the status. kopf builds it (on every watch
    event) from a deep copy of the whole object, then drops metadata and status; this hands it
    only what it keeps (spec, labels, annotations): the same essence, far less copying."""

    KEPT_METADATA = ("labels", "annotations")

    def build(self, *, body, extra_fields=None):
        if extra_fields:  # handlers that follow status fields need the whole body
            return super().build(body=body, extra_fields=extra_fields)
        metadata = body.get("metadata") or {}
        slim = {key: value for key, value in body.items() if key not in ("metadata", "status")}
        slim["metadata"] = {key: metadata[key] for key in self.KEPT_METADATA if key in metadata}
        return super().build(body=slim)


@kopf.on.login()
def login(settings: kopf.OperatorSettings, **kwargs) -> kopf.ConnectionInfo | None:
    """In a cluster: the service account. Outside: the kubeconfig that $KUBECONFIG names now."""
    path = os.environ.get("KUBECONFIG")
    if os.environ.get("KUBERNETES_SERVICE_HOST") or not path:
        return kopf.login_via_client(settings=settings, **kwargs)
    cfg = client.Configuration()
    config.load_kube_config(config_file=path, client_configuration=cfg)
    header = cfg.get_api_key_with_prefix("BearerToken") or cfg.get_api_key_with_prefix(
        "authorization"
    )
    scheme, _, token = (header or "").rpartition(" ")
    return kopf.ConnectionInfo(
        server=cfg.host,
        ca_path=cfg.ssl_ca_cert,
        insecure=not cfg.verify_ssl,
        scheme=scheme or None,
        token=token or None,
        certificate_path=cfg.cert_file,
        private_key_path=cfg.key_file,
    )


def configure_kopf(settings: kopf.OperatorSettings, wf: Settings) -> None:
    """kopf's settings for wfclock: where it keeps its bookkeeping, its timeouts, and the bounds
    on how many schedules and events it handles at once."""
    settings.persistence.finalizer = "wfclock.dev/finalizer"
    # kopf's bookkeeping lives in status.kopf, so a reconcile ends in one status write.
    settings.persistence.progress_storage = kopf.StatusProgressStorage(field="status.kopf.progress")
    settings.persistence.diffbase_storage = SlimStatusDiffBase(
        field="status.kopf.lastHandledConfiguration"
    )
    settings.watching.server_timeout = 10
    settings.watching.client_timeout = 15
    settings.networking.request_timeout = 30
    settings.posting.level = logging.WARNING  # events are posted by wfclock itself
    settings.execution.max_workers = WORKERS
    if wf.object_workers:
        settings.queueing.worker_limit = wf.object_workers
        # A worker keeps its slot until it has been idle this long: short, or the bound would
        # also cap how many schedules a second are handled (slots / idle time).
        settings.queueing.idle_timeout = WORKER_IDLE_SECONDS
    if wf.list_chunk_size:
        settings.watching.chunk_size = wf.list_chunk_size
    backpressure.install(
        wf.events_in_flight, observe=metrics.observe_gate, sieve_for=idle_events.sieve_for
    )
    settings.peering.lifetime = wf.peering_lifetime_seconds  # bounds a standby's takeover
    # The resources are known; watching CRDs for new ones would need rights the operator lacks.
    settings.scanning.disabled = True


@kopf.on.startup()
def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_) -> None:
    wf = Settings()
    logging.getLogger().setLevel(wf.log_level.upper())
    configure_kopf(settings, wf)
    idle_events.configure(settings, memo)
    ctx = Context(
        settings=wf,
        engine=engine_for(wf.database_url, threads=DATABASE_CONNECTIONS),
        kube=Kube(_api_client()),
    )
    if wf.tenant_logins:
        ctx.tenants = TenantLogins(ctx.engine, wf)
    ctx.resume = ResumeIndex(lambda: ctx.kube.child_digests(wf.namespaces))
    ctx.releases = ReleaseQueue(
        lambda entry, now: onetime.release(ctx, entry, now), workers=RELEASE_WORKERS
    )
    ctx.releases.start()
    metrics.RELEASES_QUEUED.set_function(lambda: len(ctx.releases))
    try:  # before kopf resumes the schedules (startup handlers run first)
        onetime.preload(ctx)
    except TEMPORARY_ERRORS as exc:  # each schedule's resume queues its release all the same
        log.warning("one-time releases not preloaded from the state table: %s", exc)
    # On the context's clock: a shifted fire is due, and on time, by the clock its launch and
    # the accounting sweep judge it by.
    ctx.shifted = ReleaseQueue(
        lambda entry, now: dstshift.launch_shifted(ctx, entry, now), clock=ctx.now, workers=2
    )
    ctx.shifted.start()
    ctx.deletions = ReleaseQueue(
        lambda entry, now: retention.delete_if_due(ctx, entry.namespace, entry.name, entry.uid),
        workers=1,
    )
    ctx.deletions.start()
    memo.ctx = ctx
    memo.periodic = [
        Periodic(
            "accounting",
            lambda: accounting.sweep(
                ctx, on_change=lambda ns, n: reconciler.refresh_status(ctx, ns, n)
            ),
            wf.accounting_interval_seconds,
        ).start(),
        Periodic("resync", lambda: drift.resync(ctx), wf.resync_interval_seconds).start(),
        Periodic("free memory", freememory.trim, freememory.TRIM_INTERVAL_SECONDS).start(),
    ]
    memo.finished_jobs = set()
    memo.pruner = housekeeping.LedgerPruner(ctx.engine, wf.ledger_retention_days).start()
    metrics.register_ledger(ctx.engine, per_schedule=wf.schedule_metrics)
    if wf.metrics_port and not _metrics_started.is_set():
        start_http_server(wf.metrics_port)
        _metrics_started.set()
    safe = wf.model_dump(exclude={"database_url", "tenant_credential_key"})
    log.info("wfclock operator starting with settings %s", safe)
    if tracing.setup("wfclock-operator"):
        log.info("tracing on: spans exported by OTLP/HTTP (the OTEL_* variables)")


@kopf.on.cleanup()
def cleanup(memo: kopf.Memo, **_) -> None:
    for task in getattr(memo, "periodic", []):
        task.stop()
    ctx = getattr(memo, "ctx", None)
    # `is not None`: a queue with nothing in it has a length of 0, and still a thread to stop.
    for queue in (ctx.shifted, ctx.deletions, ctx.releases) if ctx is not None else ():
        if queue is not None:
            queue.stop()
    if getattr(memo, "pruner", None):
        memo.pruner.stop()
    idle_events.configure(None, None)  # a next start in this process sieves with its own
    tracing.shutdown()


@kopf.on.resume(*RESOURCE)
@kopf.on.create(*RESOURCE)
@kopf.on.update(*RESOURCE)
def reconcile(
    meta, spec, status, patch, memo: kopf.Memo, logger, diff=None, reason=None, **_
) -> None:
    ctx: Context = memo.ctx
    # A new run-now request alone changes nothing Kubernetes runs: it is answered without
    # registering the schedule again.
    if _changed_annotations(diff) == {RUN_NOW_ANNOTATION}:
        work = reconciler.answer_run_now
    else:  # after a restart, what is already so is not written again
        resumed = reason == kopf.Reason.RESUME
        work = functools.partial(reconciler.reconcile, resumed=resumed)
    try:
        new_status = reconciler.traced(work, ctx, dict(meta), dict(spec), dict(status))
    except TEMPORARY_ERRORS as exc:
        metrics.RECONCILES.labels(result="error").inc()
        logger.warning("reconcile failed, retrying: %s", exc)
        generation = meta.get("generation", 1)
        previous = list(status.get("conditions") or [])
        patch.status["conditions"] = [error_condition(exc, generation, previous, ctx.now())]
        raise kopf.TemporaryError(str(exc), delay=RETRY_DELAY_SECONDS) from exc
    except Exception:
        metrics.RECONCILES.labels(result="error").inc()
        raise
    metrics.RECONCILES.labels(result="ok").inc()
    patch.status.update(changed_fields(status, new_status))


def changed_fields(current, new: dict) -> dict:
    """The fields of the new status that differ from the current one: an unchanged status is
    not written again (a restart's reconciles of schedules where nothing happened)."""
    return {key: value for key, value in new.items() if current.get(key) != value}


def _changed_annotations(diff) -> set[str] | None:
    """The annotation keys an update changed, or None when it changed anything else."""
    if not diff:
        return None
    keys: set[str] = set()
    for _, path, old, new in diff:
        path = tuple(path)
        if path == ("metadata",):  # metadata appeared or went as a whole
            old, new = old or {}, new or {}
            if {k for k in old.keys() | new.keys() if old.get(k) != new.get(k)} - {"annotations"}:
                return None
            path, old, new = (
                ("metadata", "annotations"),
                old.get("annotations"),
                new.get("annotations"),
            )
        if path[:2] != ("metadata", "annotations"):
            return None
        if len(path) > 2:
            keys.add(path[2])
        else:
            old, new = old or {}, new or {}
            keys |= {k for k in old.keys() | new.keys() if old.get(k) != new.get(k)}
    return keys


@kopf.on.delete(*RESOURCE)
def delete(meta, memo: kopf.Memo, logger, **_) -> None:
    try:
        reconciler.delete(memo.ctx, dict(meta))
    except TEMPORARY_ERRORS as exc:
        raise kopf.TemporaryError(str(exc), delay=RETRY_DELAY_SECONDS) from exc
    logger.info("schedule deleted: state row marked deleted, children removed")


@kopf.on.resume(*CALENDAR)
@kopf.on.create(*CALENDAR)
@kopf.on.update(*CALENDAR)
def calendar_changed(meta, spec, status, patch, memo: kopf.Memo, **_) -> None:
    """A calendar is derived into Postgres; the schedules that use it re-derive their status."""
    try:
        patch.status.update(calendars.sync(memo.ctx, dict(meta), dict(spec), dict(status)))
    except TEMPORARY_ERRORS as exc:
        raise kopf.TemporaryError(str(exc), delay=RETRY_DELAY_SECONDS) from exc


@kopf.timer(*CALENDAR, interval=CALENDAR_REFRESH_SECONDS, initial_delay=CALENDAR_REFRESH_SECONDS)
def calendar_refresh(meta, spec, status, patch, memo: kopf.Memo, **_) -> None:
    """The horizon moves on at the turn of a year: derived again now and then."""
    calendar_changed(meta=meta, spec=spec, status=status, patch=patch, memo=memo)


@kopf.on.delete(*CALENDAR)
def calendar_deleted(meta, memo: kopf.Memo, logger, **_) -> None:
    try:
        calendars.forget(memo.ctx, dict(meta))
    except TEMPORARY_ERRORS as exc:
        raise kopf.TemporaryError(str(exc), delay=RETRY_DELAY_SECONDS) from exc
    logger.info("calendar deleted: the schedules that use it refuse their fires")


def _may_be_deleted_after_completion(spec, meta, memo: kopf.Memo, **_) -> bool:
    """Only the events of a schedule that opted in, or that an edit opted out while it was
    queued, reach `delete_after_completion`: this filter is a call, kopf's handler machinery
    for every event of every schedule was a tenth of the operator's time in a mass apply."""
    if "deleteAfterCompletionSeconds" in spec:
        return True
    ctx = getattr(memo, "ctx", None)
    return ctx is not None and ctx.deletions is not None and meta.get("uid") in ctx.deletions


@kopf.on.event(*RESOURCE, when=_may_be_deleted_after_completion)
async def delete_after_completion(type, meta, spec, status, memo: kopf.Memo, **_) -> None:  # noqa: A002 - kopf's name
    """A completed one-time schedule that opted in is deleted when its time comes: queued by
    every event of the schedule (the listing after a restart too), forgotten by an edit that
    makes it not due. On the event loop: a dictionary look-up, no thread, no API call."""
    retention.queue_deletion(memo.ctx, dict(meta), dict(spec), dict(status), type == "DELETED")


def _finished(job_status: dict) -> bool:
    return bool(job_status.get("completionTime")) or any(
        c.get("type") == "Failed" and c.get("status") == "True"
        for c in job_status.get("conditions") or []
    )


def _may_report(body, type, memo: kopf.Memo, **_) -> bool:  # noqa: A002 - kopf's name
    """Whether a fire's Job event has anything to report: the Job is gone, or it has finished
    and is not reported yet. Decided on the event loop, so the other events of a Job (created,
    its pod started) take no handler thread."""
    if type == "DELETED":
        return True
    reported = getattr(memo, "finished_jobs", ())
    return _finished(body.get("status") or {}) and body["metadata"]["uid"] not in reported


@kopf.on.event("batch", "v1", "jobs", labels={SCHEDULE_UID_LABEL: kopf.PRESENT}, when=_may_report)
def fire_finished(body, type, memo: kopf.Memo, logger, **_) -> None:  # noqa: A002 - kopf's name
    """When a fire's Job finishes, report the fire and refresh the schedule's status (once per
    Job: the set of reported Jobs forgets each one when it is deleted)."""
    uid = body["metadata"]["uid"]
    if type == "DELETED":
        memo.finished_jobs.discard(uid)
        if (body["metadata"].get("labels") or {}).get(REGISTRATION_LABEL) == "one-time":
            _guarded(logger, drift.one_time_job_deleted, memo.ctx, dict(body))
        return
    if not _finished(body.get("status") or {}) or uid in memo.finished_jobs:
        return
    memo.finished_jobs.add(uid)
    created = parse_instant(body["metadata"]["creationTimestamp"])
    try:
        reconciler.report_finished_job(memo.ctx, dict(body), created)
    except TEMPORARY_ERRORS as exc:  # an event handler is not retried: the next change reports
        memo.finished_jobs.discard(uid)
        logger.warning("could not report finished Job %s: %s", body["metadata"]["name"], exc)


def _spec_may_have_changed(body, type, memo: kopf.Memo, **_) -> bool:  # noqa: A002 - kopf's name
    """Whether a CronJob event may show drift: the CronJob is gone, or its spec changed since
    this process last looked (its generation moved). The CronJob controller's status updates,
    two for every fire, leave the generation as it is: they take no handler thread and no
    database read (drift is judged by the spec alone; the resync compares everything). Nor do
    the first listing and a CronJob's creation: the resync compares those."""
    if type == "DELETED":
        return True
    if type in (None, "ADDED"):
        return False
    judged = getattr(getattr(memo, "ctx", None), "judged_cronjobs", {})
    metadata = body["metadata"]
    return judged.get(metadata["uid"]) != metadata.get("generation")


@kopf.on.event(
    "batch", "v1", "cronjobs", labels={REGISTRATION_LABEL: "recurring"}, when=_spec_may_have_changed
)
def cronjob_changed(body, type, memo: kopf.Memo, logger, **_) -> None:  # noqa: A002 - kopf's name
    """A CronJob deleted, suspended or edited by hand is put back at once."""
    metadata, judged = body["metadata"], memo.ctx.judged_cronjobs
    judged.pop(metadata["uid"], None)  # until judged without error, every event is judged
    deleted = type == "DELETED"
    if _guarded(logger, drift.cronjob_changed, memo.ctx, dict(body), deleted) and not deleted:
        judged[metadata["uid"]] = metadata.get("generation")


def _guarded(logger, check, *args) -> bool:
    """A child's watch event is not retried by kopf; a failed check waits for the resync (or
    the child's next event). Whether the check ran without error."""
    try:
        check(*args)
    except TEMPORARY_ERRORS as exc:
        logger.warning("%s failed, the resync will look again: %s", check.__name__, exc)
        return False
    return True
