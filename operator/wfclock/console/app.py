"""The console: server-rendered pages over the schedules a signed-in user may see.

Reads go to the API server as the user (schedules, Events) and to Postgres with the console's
read-only login (fires, runs), limited to the namespaces the API server says the user may list
schedules in. Actions (pause, resume, run now) are patches made as the user."""

from __future__ import annotations

import hmac
import logging
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from kubernetes.client.rest import ApiException
from sqlalchemy.exc import OperationalError, ProgrammingError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from wfclock.console import views
from wfclock.console.access import ClusterAccess, SignInRefused, User, api_message
from wfclock.console.data import ConsoleData
from wfclock.console.sessions import COOKIE, Session, Sessions
from wfclock.console.settings import ConsoleSettings

log = logging.getLogger("wfclock.console")
HERE = Path(__file__).parent
MAX_REASON = 256
_LOCAL_PATH = re.compile(r"/[A-Za-z0-9._~/-]*")
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")

SECURITY_HEADERS = {
    # Only the console's own files: no inline script, no CDN, no framing.
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class SessionMiddleware(BaseHTTPMiddleware):
    def __init__(self, app, sessions: Sessions, secure: bool):
        super().__init__(app)
        self.sessions, self.secure = sessions, secure

    async def dispatch(self, request: Request, call_next):
        if request.url.path == "/healthz" or request.url.path.startswith("/static/"):
            return await call_next(request)  # no session for probes and files
        session_id, session = self.sessions.get(request.cookies.get(COOKIE))
        request.state.session_id, request.state.session = session_id, session
        response = await call_next(request)
        session_id = request.state.session_id  # sign-in and sign-out change it
        if session_id:
            response.set_cookie(
                COOKIE, session_id, httponly=True, samesite="strict", secure=self.secure, path="/"
            )
        else:
            response.delete_cookie(COOKIE, path="/")
        for header, value in SECURITY_HEADERS.items():
            response.headers.setdefault(header, value)
        return response


def _user(session: Session) -> User:
    return User(session.username, session.uid, tuple(session.groups), tuple(session.extra.items()))


def create_app(
    settings: ConsoleSettings, access: ClusterAccess, data: ConsoleData, clock=None
) -> Starlette:
    now = clock or (lambda: datetime.now(UTC))
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    sessions = Sessions(idle_seconds=settings.session_idle_minutes * 60)
    secure = settings.secure_cookies or bool(settings.tls_cert_file)

    def page(request: Request, name: str, status_code: int = 200, **context) -> Response:
        session: Session = request.state.session
        flash, session.flash = session.flash, []
        return templates.TemplateResponse(
            request,
            name,
            {"session": session, "flash": flash, "now": views.utc_iso(now()), **context},
            status_code=status_code,
        )

    def visible(session: Session) -> tuple[list[str], dict[str, str]]:
        """Namespaces the user may list schedules in (one SubjectAccessReview each, reused for
        a short while), and every known namespace's tenant."""
        known = data.known_namespaces()
        stamp = now().timestamp()
        if session.access is None or stamp - session.access[0] > settings.access_cache_seconds:
            candidates = [*known, *settings.namespaces]
            session.access = (stamp, access.visible_namespaces(_user(session), candidates))
        return session.access[1], known

    def signed_in(handler):
        async def wrapper(request: Request):
            if not request.state.session.signed_in:
                return RedirectResponse(f"/login?next={request.url.path}", status_code=303)
            try:
                return await handler(request)
            except ApiException as exc:
                if exc.status != 401:
                    raise
                # The token expired or was revoked: the session ends with it.
                sessions.end(request.state.session_id)
                request.state.session_id = None
                return RedirectResponse("/login?expired=1", status_code=303)

        return wrapper

    def flash_api_error(session: Session, exc: ApiException) -> None:
        session.flash.append(("error", f"Kubernetes refused: {api_message(exc)}"))

    # --- sign-in ---

    async def login_page(request: Request):
        expired = request.query_params.get("expired")
        return page(
            request,
            "login.html",
            next=request.query_params.get("next", "/"),
            error="your token is no longer accepted; sign in again" if expired else "",
        )

    async def login(request: Request):
        form = await request.form()
        session: Session = request.state.session
        if not _csrf_ok(session, form):
            return page(
                request, "login.html", 403, error="the form expired; sign in again", next="/"
            )
        try:
            user = await run_in_threadpool(access.review_token, str(form.get("token", "")))
        except SignInRefused as exc:
            return page(request, "login.html", 401, error=str(exc), next=form.get("next", "/"))
        session.token = str(form["token"]).strip()
        session.username, session.uid = user.username, user.uid
        session.groups, session.extra = list(user.groups), {k: list(v) for k, v in user.extra}
        session.access = None
        request.state.session_id = sessions.rotate(request.state.session_id)
        log.info("signed in: %s", user.username)
        return RedirectResponse(_local_path(str(form.get("next") or "/")), 303)

    async def logout(request: Request):
        form = await request.form()
        if _csrf_ok(request.state.session, form):
            sessions.end(request.state.session_id)
            request.state.session_id = None
        return RedirectResponse("/login", 303)

    # --- pages ---

    def _schedule_rows(session: Session) -> tuple[list[dict], list[dict], list[str]]:
        namespaces, _ = visible(session)
        objs, errors = [], []
        with access.as_user(session.token) as kube:
            for ns in namespaces:
                try:
                    objs += kube.schedules(ns)
                except ApiException as exc:
                    if exc.status == 401:
                        raise
                    errors.append(f"{ns}: {api_message(exc)}")
        ledger = data.schedules([o["metadata"].get("uid", "") for o in objs])
        at = now()
        rows = [views.schedule_row(o, ledger.get(o["metadata"].get("uid", "")), at) for o in objs]
        return rows, objs, errors

    @signed_in
    async def schedules(request: Request):
        session: Session = request.state.session
        rows, _, errors = await run_in_threadpool(_schedule_rows, session)
        wanted = {
            k: request.query_params.get(k, "") for k in ("namespace", "tenant", "type", "phase")
        }
        return page(
            request,
            "schedules.html",
            rows=views.filter_rows(rows, **wanted),
            wanted=wanted,
            options={
                **{k: views.choices(rows, k) for k in wanted},
                "phase": views.phase_choices(rows),
            },
            errors=errors,
            total=len(rows),
        )

    @signed_in
    async def timeline(request: Request):
        session: Session = request.state.session
        rows, objs, errors = await run_in_threadpool(_schedule_rows, session)
        namespace = request.query_params.get("namespace", "")
        if namespace:
            objs = [o for o in objs if o["metadata"]["namespace"] == namespace]
        policies = await run_in_threadpool(_fire_policies, objs, errors)
        return page(
            request,
            "timeline.html",
            timeline=views.timeline(objs, now(), policies=policies),
            namespaces=views.choices(rows, "namespace"),
            namespace=namespace,
            errors=errors,
        )

    def _fire_policies(objs: list[dict], errors: list[str]):
        """The calendars and launched fires of the schedules, or None (with a note in `errors`)
        where the console's login may not read them yet (a role made by an older version)."""
        try:
            return data.fire_policies(objs)
        except ProgrammingError as exc:
            log.warning("calendars not readable: %s", exc)
            errors.append(
                "calendars and maxFires are not applied: the console's database login may not "
                "read them; run `wfclock db console-role` again"
            )
            return None

    def _schedule_page(session: Session, namespace: str, name: str) -> dict:
        # Asked of the API server even outside the visible namespaces: a refusal is its own words.
        namespaces, _ = visible(session)
        with access.as_user(session.token) as kube:
            obj = kube.schedule(namespace, name)
            try:
                events = [views.event_row(e) for e in kube.events(namespace, name)]
                events_error = ""
            except ApiException as exc:
                events, events_error = [], api_message(exc)
        uid = obj["metadata"].get("uid", "")
        ledger = data.schedules([uid]).get(uid)
        policy = None
        if namespace in namespaces:
            policy = (_fire_policies([obj], []) or {}).get(uid)
        at = now()
        runs = (
            data.runs([namespace], [], schedule_uid=uid, limit=50)
            if namespace in namespaces
            else []
        )
        return {
            "row": views.schedule_row(obj, ledger, at),
            "spec_yaml": _yaml(obj.get("spec") or {}),
            "next_fires": views.next_fires(obj, at, policy=policy),
            "time_policy": views.time_policy(obj, policy, at),
            "recent_fires": views.recent_fires(
                obj, data.fires(uid) if namespace in namespaces else []
            ),
            "events": sorted(events, key=lambda e: e["at"], reverse=True),
            "events_error": events_error,
            "runs": [views.run_row(r) for r in runs],
            "conditions": (obj.get("status") or {}).get("conditions") or [],
        }

    @signed_in
    async def schedule(request: Request):
        namespace, name = request.path_params["namespace"], request.path_params["name"]
        if not (_NAME.match(namespace) and _NAME.match(name)):
            return page(
                request, "error.html", 400, message="namespace and name must be Kubernetes names"
            )
        try:
            context = await run_in_threadpool(
                _schedule_page, request.state.session, namespace, name
            )
        except ApiException as exc:
            if exc.status == 401:
                raise
            return page(
                request,
                "error.html",
                exc.status or 500,
                message=f"Kubernetes refused: {api_message(exc)}",
            )
        return page(request, "schedule.html", **context)

    @signed_in
    async def runs(request: Request):
        session: Session = request.state.session
        q = request.query_params
        problems = []
        trigger_type = q.get("trigger", "")
        if trigger_type and trigger_type not in views.TRIGGER_TYPES:
            problems.append(
                f"trigger: {trigger_type!r} is not one of {', '.join(views.TRIGGER_TYPES)}"
            )
            trigger_type = ""
        workflow = q.get("workflow", "").strip()
        if workflow and not _is_uuid(workflow):
            problems.append(f"workflow: {workflow!r} is not a workflow id (a UUID)")
            workflow = ""
        hours = q.get("hours", "")
        since = None
        if hours:
            if hours.isdigit() and 0 < int(hours) <= 24 * 366:
                since = now() - timedelta(hours=int(hours))
            else:
                problems.append(f"hours: {hours!r} is not a whole number of hours from 1 to 8784")

        def load():
            namespaces, known = visible(session)
            tenants = sorted({known[ns] for ns in namespaces if ns in known})
            rows = data.runs(
                namespaces, tenants, trigger_type=trigger_type, workflow_id=workflow,
                tenant=q.get("tenant", ""), since=since,
            )  # fmt: skip
            return [views.run_row(r) for r in rows], tenants

        rows, tenants = await run_in_threadpool(load)
        return page(
            request,
            "runs.html",
            runs=rows,
            tenants=tenants,
            trigger_types=views.TRIGGER_TYPES,
            wanted={
                "trigger": trigger_type,
                "workflow": workflow,
                "tenant": q.get("tenant", ""),
                "hours": hours,
            },
            problems=problems,
        )

    # --- actions ---

    def action(kind: str):
        @signed_in
        async def act(request: Request):
            session: Session = request.state.session
            namespace, name = request.path_params["namespace"], request.path_params["name"]
            if not (_NAME.match(namespace) and _NAME.match(name)):
                return page(
                    request,
                    "error.html",
                    400,
                    message="namespace and name must be Kubernetes names",
                )
            target = f"/schedules/{namespace}/{name}"
            form = await request.form()
            if not _csrf_ok(session, form):
                return page(
                    request,
                    "error.html",
                    403,
                    message="the form expired (CSRF check failed); reload the page and try again",
                )
            reason = str(form.get("reason", "")).strip()
            if kind == "pause" and not reason:
                session.flash.append(
                    (
                        "error",
                        "reason: empty; say why the schedule is paused (up to 256 characters)",
                    )
                )
                return RedirectResponse(target, 303)
            if len(reason) > MAX_REASON:
                session.flash.append(
                    (
                        "error",
                        f"reason: {len(reason)} characters; at most {MAX_REASON} are accepted",
                    )
                )
                return RedirectResponse(target, 303)

            def call():
                with access.as_user(session.token) as kube:
                    if kind == "pause":
                        kube.pause(namespace, name, reason, session.username)
                    elif kind == "resume":
                        kube.resume(namespace, name, reason, session.username)
                    else:
                        kube.run_now(namespace, name, now())

            try:
                await run_in_threadpool(call)
            except ApiException as exc:
                if exc.status == 401:
                    raise
                flash_api_error(session, exc)
            else:
                done = {"pause": "Paused", "resume": "Resumed", "run-now": "Run now requested for"}[
                    kind
                ]
                session.flash.append(("ok", f"{done} {namespace}/{name}"))
                log.info("%s %s/%s by %s", kind, namespace, name, session.username)
            return RedirectResponse(target, 303)

        return act

    async def healthz(request: Request):
        return PlainTextResponse("ok")

    routes = [
        Route("/", schedules),
        Route("/login", login_page, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/timeline", timeline),
        Route("/runs", runs),
        Route("/schedules/{namespace}/{name}", schedule),
        Route("/schedules/{namespace}/{name}/pause", action("pause"), methods=["POST"]),
        Route("/schedules/{namespace}/{name}/resume", action("resume"), methods=["POST"]),
        Route("/schedules/{namespace}/{name}/run-now", action("run-now"), methods=["POST"]),
        Route("/healthz", healthz),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]

    async def database_unavailable(request: Request, exc: Exception):
        log.warning("database unavailable: %s", exc)
        return page(
            request,
            "error.html",
            503,
            message="the run database is unavailable; try again in a moment",
        )

    return Starlette(
        exception_handlers={OperationalError: database_unavailable},
        routes=routes,
        middleware=[Middleware(SessionMiddleware, sessions=sessions, secure=secure)],
    )


def _local_path(target: str) -> str:
    """Only a path of this console (never `//host` or `/\\host`, which browsers treat as
    another site)."""
    return target if _LOCAL_PATH.fullmatch(target) and not target.startswith("//") else "/"


def _csrf_ok(session: Session, form) -> bool:
    return hmac.compare_digest(str(form.get("csrf", "")), session.csrf)


def _is_uuid(text: str) -> bool:
    import uuid

    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def _yaml(value: dict) -> str:
    import yaml

    return yaml.safe_dump(value, sort_keys=False, default_flow_style=False)
