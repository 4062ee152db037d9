"""Run control: pause reasons, overlap policies, buffered fires, run-now requests, traces.

- `workflow_schedules.pause_reason` (shown in the status and the Events) and `overlap_policy`
  (`Allow`, the default and the behaviour so far; `Skip`; `BufferOne`).
- The fire ledger gains the outcome `buffered` (a fire that waits for the schedule's running run
  to finish), `kind` (`clock`, or `manual` for a run-now request) and `traceparent` (the W3C
  trace context a fire carries into its run).
- `wfclock_fire` gains a last argument, the fire's traceparent, and decides the overlap policy
  from `workflow_runs` after it holds the schedule row (the 13-argument form of 0004 stays, for
  launcher pods of the previous image, and calls it without a trace).
- A buffered fire is launched, by its own key, by `wfclock_release_buffered`, which a trigger on
  `workflow_runs` calls when one of the schedule's runs finishes (see `wfclock_run_finished` for
  the statuses that count as finished) or is deleted.
- `wfclock_run_now` starts the run of a run-now request, claimed in the ledger by
  `workflow-schedule-run-now:{scheduleId}:{requestId}`: a second claim of the same id is a
  duplicate, whoever asks (two operator replicas, a re-applied manifest).

Locking: every path that decides from a schedule's runs or buffered fire (a delivery, a release,
a run-now request) first takes the schedule row (`FOR UPDATE`) and reads in a later statement,
whose snapshot then includes whatever the previous holder committed. Without that, a delivery
that waited for the lock would judge from runs as they were before it waited.

Revision ID: 0005
Revises: 0004
"""

import importlib.util
from pathlib import Path

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

SIGNATURE = (
    "wfclock_fire(uuid, timestamptz, text, text, text, text, text, boolean, timestamptz, uuid, "
    "text, text, text, text)"
)

# The statuses a worker writes when a run is over; any other status (queued, running, a status
# wfclock does not know) is a run still going. wfclock.core.runs.FINISHED_RUN_STATUSES agrees.
RUN_FINISHED = """
CREATE FUNCTION wfclock_run_finished(p_status text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT lower(p_status) IN ('succeeded', 'completed', 'failed', 'cancelled', 'canceled',
                               'timed_out', 'terminated')
$$
"""

UTC_ISO = r"""
CREATE FUNCTION wfclock_utc_iso(p_at timestamptz) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT to_char(p_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS')
        || CASE WHEN date_trunc('second', p_at) = p_at THEN ''
                ELSE to_char(p_at AT TIME ZONE 'UTC', '.MS') END || 'Z'
$$
"""

# payload.WorkflowClockTrigger.v1: schedule metadata only, nothing from outside.
CLOCK_PAYLOAD = """
CREATE FUNCTION wfclock_clock_payload(
    p_trigger_type text, p_schedule_id uuid, p_timezone text, p_workflow_id uuid,
    p_workflow_version integer, p_cron text, p_at_iso text, p_now_iso text) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_build_object(
               'triggerType', p_trigger_type, 'scheduleId', p_schedule_id::text,
               'scheduledFor', p_at_iso, 'firedAt', p_now_iso, 'timezone', p_timezone,
               'workflowId', p_workflow_id::text, 'workflowVersion', p_workflow_version)
           || CASE WHEN p_trigger_type = 'recurring' THEN jsonb_build_object('cron', p_cron)
                   ELSE '{}'::jsonb END
$$
"""

FIRE = r"""
CREATE FUNCTION wfclock_fire(
    p_schedule_id uuid, p_at timestamptz, p_key text, p_at_iso text, p_now_iso text,
    p_cron text, p_timezone text, p_is_fire boolean, p_next_fire timestamptz, p_run_id uuid,
    p_source text, p_schema_ref text, p_channel text, p_traceparent text)
RETURNS TABLE (r_outcome text, r_run_id uuid, r_reason text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $fn$
#variable_conflict use_column
DECLARE
    v_tenant text;
    v_found bigint;
    v_claimed bigint;
    v_outcome text;
    v_reason text;
    v_notified bigint;
    v_at_iso text;
BEGIN
    -- A launcher login is a direct member of wfclock_launcher (pg_has_role would also say
    -- yes for a superuser, who is the administrator here), granted without admin option: the
    -- operator's login that created the role holds it with admin option (PostgreSQL 16+).
    IF EXISTS (SELECT 1 FROM pg_auth_members m
               JOIN pg_roles g ON g.oid = m.roleid AND g.rolname = 'wfclock_launcher'
               JOIN pg_roles u ON u.oid = m.member AND u.rolname = session_user
               WHERE NOT m.admin_option) THEN
        SELECT l.tenant INTO v_tenant FROM wfclock_tenant_logins l
        WHERE l.role_name = session_user;
        IF v_tenant IS NULL THEN
            RAISE EXCEPTION 'login % belongs to no tenant', session_user
                USING ERRCODE = 'insufficient_privilege';
        END IF;
        -- Another tenant's schedule is answered as an unknown one: nothing is written.
        IF NOT EXISTS (SELECT 1 FROM workflow_schedules s
                       WHERE s.schedule_id = p_schedule_id AND s.tenant = v_tenant) THEN
            RETURN QUERY SELECT 'unknown'::text, NULL::uuid, NULL::text;
            RETURN;
        END IF;
        -- A launcher's clock is not trusted for the payload: the database's is.
        p_now_iso := to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"');
    END IF;
    -- Whoever calls: the key, the instant's text and the payload's constants are derived here,
    -- never taken from the caller, and no fire is claimed before its time (a key spent early
    -- would make the real fire a duplicate).
    v_at_iso := wfclock_utc_iso(p_at);
    IF p_key IS DISTINCT FROM 'workflow-schedule-fire:' || p_schedule_id || ':' || v_at_iso THEN
        RAISE EXCEPTION 'fire key % is not the key of schedule % at %', p_key, p_schedule_id,
            v_at_iso USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_at > now() + interval '60 seconds' THEN
        RAISE EXCEPTION 'the fire of % is not due yet', v_at_iso
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- A trace must never cost a fire: a malformed one is dropped, not refused.
    IF p_traceparent !~ '^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$' THEN
        p_traceparent := NULL;
    END IF;
    p_at_iso := v_at_iso;
    p_schema_ref := 'payload.WorkflowClockTrigger.v1';
    p_channel := 'wfclock_runs';
    -- Deliveries, releases of a buffered fire and run-now requests of one schedule are
    -- serialised by its row lock, taken before the statement that decides: that statement's
    -- snapshot then holds every run and fire the previous holder committed.
    PERFORM 1 FROM workflow_schedules WHERE schedule_id = p_schedule_id FOR UPDATE;
    WITH schedule AS (
        SELECT s.*, CASE
            WHEN deleted_at IS NOT NULL THEN 'deleted'
            WHEN status = 'paused' THEN 'paused'
            WHEN quiet @> p_at
                THEN 'paused: scheduled while the schedule was paused or invalid'
            WHEN status = 'completed' THEN 'completed'
            WHEN NOT enabled OR status IN ('disabled', 'failed') THEN 'disabled'
            WHEN trigger_type = 'schedule' AND run_at IS DISTINCT FROM p_at
                THEN 'superseded: the schedule now runs at '
                     || to_char(run_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
            WHEN trigger_type = 'recurring' AND p_at < trigger_effective_from
                THEN 'superseded: scheduled before the trigger''s last change'
            WHEN trigger_type = 'recurring'
                 AND (cron IS DISTINCT FROM p_cron OR timezone IS DISTINCT FROM p_timezone)
                THEN 'superseded: the Job was created for another cron or time zone'
            END AS refusal
        FROM workflow_schedules s WHERE schedule_id = p_schedule_id
    ), overlap AS (
        -- Only a fire the schedule's state accepts meets its overlap policy.
        SELECT s.*, busy.run_id AS busy_run, busy.status AS busy_status,
               (s.overlap_policy = 'BufferOne'
                AND EXISTS (SELECT 1 FROM workflow_schedule_fires b
                            WHERE b.schedule_id = s.schedule_id AND b.outcome = 'buffered'))
                   AS buffer_taken
        FROM schedule s LEFT JOIN LATERAL (
            SELECT r.run_id, r.status FROM workflow_runs r
            WHERE r.schedule_id = s.schedule_id AND NOT wfclock_run_finished(r.status)
            ORDER BY r.created_at LIMIT 1
        ) busy ON s.refusal IS NULL AND s.overlap_policy <> 'Allow'
    ), verdict AS (
        SELECT o.*, CASE
            WHEN o.refusal IS NOT NULL THEN 'skipped'
            WHEN o.busy_run IS NULL THEN 'launched'
            WHEN o.overlap_policy = 'BufferOne' AND NOT o.buffer_taken THEN 'buffered'
            ELSE 'skipped' END AS verdict,
            coalesce(o.refusal, CASE
                WHEN o.busy_run IS NULL THEN NULL
                WHEN o.overlap_policy = 'BufferOne' AND NOT o.buffer_taken
                    THEN 'overlap: waits for run ' || o.busy_run || ' (' || o.busy_status
                         || ') to finish'
                WHEN o.overlap_policy = 'BufferOne'
                    THEN 'overlap: run ' || o.busy_run || ' is still ' || o.busy_status
                         || ' and another fire already waits for it'
                ELSE 'overlap: run ' || o.busy_run || ' is still ' || o.busy_status
                END) AS verdict_reason
        FROM overlap o
    ), claim AS (
        INSERT INTO workflow_schedule_fires
            (fire_key, schedule_id, scheduled_for, outcome, reason, run_id, source, traceparent)
        SELECT p_key, schedule_id, p_at, verdict, verdict_reason,
               CASE WHEN verdict = 'launched' THEN p_run_id::uuid END, p_source, p_traceparent
        FROM verdict
        ON CONFLICT (fire_key) DO NOTHING
        RETURNING fire_key, run_id, outcome, reason
    ), run AS (
        INSERT INTO workflow_runs
            (run_id, tenant, workflow_id, workflow_version, status, payload, payload_schema_ref,
             trigger_type, trigger_metadata, trigger_fire_key, schedule_id)
        SELECT claim.run_id, s.tenant, s.workflow_id, s.workflow_version, 'queued',
               wfclock_clock_payload(s.trigger_type, s.schedule_id, s.timezone, s.workflow_id,
                                     s.workflow_version, s.cron, p_at_iso, p_now_iso),
               p_schema_ref, s.trigger_type,
               jsonb_build_object('fireKey', claim.fire_key, 'source', p_source::text)
               || CASE WHEN p_is_fire THEN '{}'::jsonb
                       ELSE jsonb_build_object('note', 'this instant is not a fire of the cron by '
                            || 'the launcher''s time-zone data; the CronJob controller''s counts') END
               || CASE WHEN p_traceparent IS NULL THEN '{}'::jsonb
                       ELSE jsonb_build_object('traceparent', p_traceparent) END,
               claim.fire_key, s.schedule_id
        FROM claim, schedule s WHERE claim.run_id IS NOT NULL
        RETURNING run_id, tenant
    ), state AS (
        UPDATE workflow_schedules s SET
            last_fire_at = CASE WHEN claim.run_id IS NOT NULL THEN p_at ELSE s.last_fire_at END,
            last_fire_key = CASE WHEN claim.run_id IS NOT NULL THEN claim.fire_key
                                 ELSE s.last_fire_key END,
            last_run_id = coalesce(claim.run_id, s.last_run_id),
            last_run_status = CASE WHEN claim.run_id IS NOT NULL THEN 'queued'
                                   WHEN claim.outcome = 'buffered' THEN 'buffered'
                                   ELSE 'skipped' END,
            last_error = CASE WHEN claim.run_id IS NOT NULL THEN NULL ELSE s.last_error END,
            fire_problem = CASE WHEN claim.outcome <> 'skipped'
                                 AND p_source NOT IN ('recovery', 'catch-up', 'backfill')
                                THEN NULL ELSE s.fire_problem END,
            status = CASE WHEN claim.run_id IS NOT NULL AND s.trigger_type = 'schedule'
                          THEN 'completed' ELSE s.status END,
            -- Only a launched fire belongs to the current trigger: a refused one must not move
            -- next_fire_at by the cron it was planned under.
            next_fire_at = CASE WHEN claim.outcome = 'skipped' THEN s.next_fire_at
                                WHEN s.trigger_type = 'schedule' THEN NULL
                                WHEN s.status = 'scheduled' THEN coalesce(p_next_fire, s.next_fire_at)
                                ELSE s.next_fire_at END,
            updated_at = now()
        FROM claim WHERE s.schedule_id = p_schedule_id
        RETURNING 1
    ), notify AS (
        SELECT pg_notify(p_channel, json_build_object('runId', run_id, 'tenant', tenant)::text)
        FROM run
    )
    SELECT (SELECT count(*) FROM schedule), (SELECT count(*) FROM claim),
           (SELECT c.outcome FROM claim c), (SELECT c.reason FROM claim c),
           (SELECT count(*) FROM notify)
        INTO v_found, v_claimed, v_outcome, v_reason, v_notified;
    IF v_found = 0 THEN
        RETURN QUERY SELECT 'unknown'::text, NULL::uuid, NULL::text;
        RETURN;
    END IF;
    IF v_claimed = 0 THEN
        -- The first claim of this key is committed and visible (see the lock above).
        -- Counted, never a second run.
        RETURN QUERY
        UPDATE workflow_schedule_fires f
        SET attempts = f.attempts + 1, last_delivered_at = now()
        WHERE f.fire_key = p_key
        RETURNING 'duplicate'::text, f.run_id, coalesce(f.reason, 'first ' || f.outcome);
        RETURN;
    END IF;
    RETURN QUERY SELECT v_outcome, CASE WHEN v_outcome = 'launched' THEN p_run_id END, v_reason;
END
$fn$
"""

# Launcher pods of the previous image call the 0004 form: same decision, no trace.
FIRE_WITHOUT_TRACE = """
CREATE OR REPLACE FUNCTION wfclock_fire(
    p_schedule_id uuid, p_at timestamptz, p_key text, p_at_iso text, p_now_iso text,
    p_cron text, p_timezone text, p_is_fire boolean, p_next_fire timestamptz, p_run_id uuid,
    p_source text, p_schema_ref text, p_channel text)
RETURNS TABLE (r_outcome text, r_run_id uuid, r_reason text)
LANGUAGE sql SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT * FROM wfclock_fire($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, NULL::text)
$$
"""

# The oldest buffered fire of a schedule is launched, by its own key, once no run of the
# schedule is unfinished; re-checked against the schedule's state as a delivery would be (a
# schedule paused, deleted or re-triggered since does not run it; the ledger says why).
RELEASE_BUFFERED = r"""
CREATE FUNCTION wfclock_release_buffered(p_schedule_id uuid) RETURNS uuid
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $fn$
DECLARE
    v_fire record;
    v_s record;
    v_reason text;
    v_run uuid;
    v_now_iso text := to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"');
BEGIN
    PERFORM 1 FROM workflow_schedules WHERE schedule_id = p_schedule_id FOR UPDATE;
    SELECT * INTO v_fire FROM workflow_schedule_fires
    WHERE schedule_id = p_schedule_id AND outcome = 'buffered'
    ORDER BY scheduled_for LIMIT 1;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF EXISTS (SELECT 1 FROM workflow_runs r WHERE r.schedule_id = p_schedule_id
               AND NOT wfclock_run_finished(r.status)) THEN
        RETURN NULL;
    END IF;
    SELECT * INTO v_s FROM workflow_schedules WHERE schedule_id = p_schedule_id;
    v_reason := CASE
        WHEN v_s.schedule_id IS NULL OR v_s.deleted_at IS NOT NULL THEN 'deleted'
        WHEN v_s.status = 'paused' THEN 'paused'
        WHEN v_s.quiet @> v_fire.scheduled_for THEN 'paused: the schedule was paused or invalid'
        WHEN NOT v_s.enabled OR v_s.status IN ('disabled', 'failed') THEN 'disabled'
        WHEN v_s.trigger_type = 'schedule' AND v_s.run_at IS DISTINCT FROM v_fire.scheduled_for
            THEN 'superseded: the schedule now runs at ' || wfclock_utc_iso(v_s.run_at)
        WHEN v_s.trigger_type = 'recurring' AND v_fire.scheduled_for < v_s.trigger_effective_from
            THEN 'superseded: scheduled before the trigger''s last change'
        END;
    IF v_reason IS NOT NULL THEN
        UPDATE workflow_schedule_fires
        SET outcome = 'skipped', reason = v_reason || ' (it waited for a running run)'
        WHERE fire_key = v_fire.fire_key;
        RETURN NULL;
    END IF;
    v_run := gen_random_uuid();
    INSERT INTO workflow_runs
        (run_id, tenant, workflow_id, workflow_version, status, payload, payload_schema_ref,
         trigger_type, trigger_metadata, trigger_fire_key, schedule_id)
    VALUES (v_run, v_s.tenant, v_s.workflow_id, v_s.workflow_version, 'queued',
            wfclock_clock_payload(v_s.trigger_type, v_s.schedule_id, v_s.timezone,
                                  v_s.workflow_id, v_s.workflow_version, v_s.cron,
                                  wfclock_utc_iso(v_fire.scheduled_for), v_now_iso),
            'payload.WorkflowClockTrigger.v1', v_s.trigger_type,
            jsonb_build_object('fireKey', v_fire.fire_key, 'source', v_fire.source,
                               'bufferedSince', wfclock_utc_iso(v_fire.first_delivered_at))
            || CASE WHEN v_fire.traceparent IS NULL THEN '{}'::jsonb
                    ELSE jsonb_build_object('traceparent', v_fire.traceparent) END,
            v_fire.fire_key, v_s.schedule_id);
    UPDATE workflow_schedule_fires
    SET outcome = 'launched', run_id = v_run,
        reason = 'buffered: launched when the running run finished'
    WHERE fire_key = v_fire.fire_key;
    UPDATE workflow_schedules s SET
        last_fire_at = greatest(s.last_fire_at, v_fire.scheduled_for),
        last_fire_key = CASE WHEN s.last_fire_at > v_fire.scheduled_for THEN s.last_fire_key
                             ELSE v_fire.fire_key END,
        last_run_id = v_run, last_run_status = 'queued', last_error = NULL,
        status = CASE WHEN s.trigger_type = 'schedule' THEN 'completed' ELSE s.status END,
        next_fire_at = CASE WHEN s.trigger_type = 'schedule' THEN NULL ELSE s.next_fire_at END,
        updated_at = now()
    WHERE s.schedule_id = p_schedule_id;
    PERFORM pg_notify('wfclock_runs',
                      json_build_object('runId', v_run, 'tenant', v_s.tenant)::text);
    RETURN v_run;
END
$fn$
"""

# A run that finishes (or is deleted) may let the schedule's buffered fire go.
RUN_FINISHED_TRIGGER = """
CREATE FUNCTION wfclock_run_ended() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $fn$
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF OLD.schedule_id IS NOT NULL AND NOT wfclock_run_finished(OLD.status) THEN
            PERFORM wfclock_release_buffered(OLD.schedule_id);
        END IF;
    ELSIF NEW.schedule_id IS NOT NULL AND wfclock_run_finished(NEW.status)
          AND NOT wfclock_run_finished(OLD.status) THEN
        PERFORM wfclock_release_buffered(NEW.schedule_id);
    END IF;
    RETURN NULL;
END
$fn$
"""

# The run of a run-now request: claimed in the ledger by the request's own key (kind manual),
# refused (recorded as skipped, so the id is spent) when the schedule is paused, invalid or
# deleted. The payload is the schedule's clock payload with scheduledFor the request's instant;
# the run's trigger type is manual and its metadata names the schedule, request and requester.
RUN_NOW = r"""
CREATE FUNCTION wfclock_run_now(
    p_schedule_id uuid, p_request_id text, p_requested_by text, p_run_id uuid,
    p_traceparent text)
RETURNS TABLE (r_outcome text, r_run_id uuid, r_reason text, r_key text)
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $fn$
#variable_conflict use_column
DECLARE
    v_key text;
    v_s record;
    v_reason text;
    v_claimed text;
    v_now_iso text := to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"');
BEGIN
    IF p_request_id IS NULL OR p_request_id !~ '^[A-Za-z0-9]([A-Za-z0-9._:-]{0,126}[A-Za-z0-9])?$'
    THEN
        RAISE EXCEPTION 'run-now request id % is not accepted: 1-128 letters, digits and '
            '". _ : -", starting and ending with a letter or digit', p_request_id
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_traceparent !~ '^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$' THEN
        p_traceparent := NULL;
    END IF;
    v_key := 'workflow-schedule-run-now:' || p_schedule_id || ':' || p_request_id;
    SELECT * INTO v_s FROM workflow_schedules WHERE schedule_id = p_schedule_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'unknown'::text, NULL::uuid, NULL::text, v_key;
        RETURN;
    END IF;
    v_reason := CASE
        WHEN v_s.deleted_at IS NOT NULL THEN 'deleted: the schedule is being deleted'
        WHEN v_s.status = 'paused'
            THEN 'paused: ' || coalesce(v_s.pause_reason, 'the schedule is paused')
        WHEN v_s.status = 'disabled' OR NOT v_s.enabled
            THEN 'invalid: ' || coalesce(v_s.last_error, 'the spec is invalid')
        END;
    INSERT INTO workflow_schedule_fires
        (fire_key, schedule_id, scheduled_for, outcome, reason, run_id, source, kind,
         traceparent)
    VALUES (v_key, p_schedule_id, date_trunc('milliseconds', now()),
            CASE WHEN v_reason IS NULL THEN 'launched' ELSE 'skipped' END, v_reason,
            CASE WHEN v_reason IS NULL THEN p_run_id END, 'run-now', 'manual', p_traceparent)
    ON CONFLICT (fire_key) DO NOTHING
    RETURNING fire_key INTO v_claimed;
    IF v_claimed IS NULL THEN
        RETURN QUERY
        UPDATE workflow_schedule_fires f
        SET attempts = f.attempts + 1, last_delivered_at = now()
        WHERE f.fire_key = v_key
        RETURNING 'duplicate'::text, f.run_id, coalesce(f.reason, 'first ' || f.outcome), v_key;
        RETURN;
    END IF;
    IF v_reason IS NOT NULL THEN
        RETURN QUERY SELECT 'skipped'::text, NULL::uuid, v_reason, v_key;
        RETURN;
    END IF;
    INSERT INTO workflow_runs
        (run_id, tenant, workflow_id, workflow_version, status, payload, payload_schema_ref,
         trigger_type, trigger_metadata, trigger_fire_key, schedule_id)
    VALUES (p_run_id, v_s.tenant, v_s.workflow_id, v_s.workflow_version, 'queued',
            wfclock_clock_payload(v_s.trigger_type, v_s.schedule_id, v_s.timezone,
                                  v_s.workflow_id, v_s.workflow_version, v_s.cron,
                                  v_now_iso, v_now_iso),
            'payload.WorkflowClockTrigger.v1', 'manual',
            jsonb_build_object('fireKey', v_key, 'source', 'run-now',
                               'scheduleId', p_schedule_id::text, 'requestId', p_request_id,
                               'requestedBy', coalesce(p_requested_by, ''))
            || CASE WHEN p_traceparent IS NULL THEN '{}'::jsonb
                    ELSE jsonb_build_object('traceparent', p_traceparent) END,
            v_key, p_schedule_id);
    PERFORM pg_notify('wfclock_runs',
                      json_build_object('runId', p_run_id, 'tenant', v_s.tenant)::text);
    RETURN QUERY SELECT 'launched'::text, p_run_id, NULL::text, v_key;
END
$fn$
"""


# Skipped clock fires by schedule and reason (the reason's first word: overlap, paused, missed,
# superseded, ...), kept as they are recorded, for the metrics (a scrape reads these, never the
# ledger). Launched fires, the hot path, do not pass through it.
COUNT_SKIP = r"""
CREATE FUNCTION wfclock_count_skip() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    INSERT INTO workflow_schedule_skip_counts AS c (schedule_id, reason, fires)
    VALUES (NEW.schedule_id, coalesce(substring(NEW.reason FROM '^[a-z-]+'), 'unknown'), 1)
    ON CONFLICT (schedule_id, reason) DO UPDATE SET fires = c.fires + 1;
    RETURN NULL;
END
$fn$
"""


def _previous_fire() -> str:
    """0004's statement, read from its migration beside this one (Alembic loads migrations by
    path, not as modules of a package)."""
    path = Path(__file__).with_name("0004_tenant_logins.py")
    spec = importlib.util.spec_from_file_location("wfclock_migration_0004", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.FUNCTION


def upgrade() -> None:
    op.execute("ALTER TABLE workflow_schedules ADD COLUMN pause_reason text")
    op.execute(
        "ALTER TABLE workflow_schedules ADD COLUMN overlap_policy text NOT NULL DEFAULT 'Allow' "
        "CONSTRAINT ck_workflow_schedules_overlap_policy "
        "CHECK (overlap_policy IN ('Allow', 'Skip', 'BufferOne'))"
    )
    # 0001's name for it went through the naming convention twice; found by what it checks.
    op.execute(
        "DO $$ DECLARE c text; BEGIN "
        "SELECT conname INTO STRICT c FROM pg_constraint "
        "WHERE conrelid = 'workflow_schedule_fires'::regclass AND contype = 'c' "
        "AND pg_get_constraintdef(oid) LIKE '%outcome%'; "
        "EXECUTE format('ALTER TABLE workflow_schedule_fires DROP CONSTRAINT %I', c); END $$"
    )
    op.execute(
        "ALTER TABLE workflow_schedule_fires "
        "ADD CONSTRAINT ck_workflow_schedule_fires_outcome "
        "CHECK (outcome IN ('launched', 'skipped', 'buffered')), "
        "ADD COLUMN kind text NOT NULL DEFAULT 'clock' "
        "CONSTRAINT ck_workflow_schedule_fires_kind CHECK (kind IN ('clock', 'manual')), "
        "ADD COLUMN traceparent text"
    )
    op.execute(
        "CREATE INDEX ix_workflow_schedule_fires_schedule_id_buffered "
        "ON workflow_schedule_fires (schedule_id) WHERE outcome = 'buffered'"
    )
    op.execute(RUN_FINISHED)
    op.execute(UTC_ISO)
    op.execute(CLOCK_PAYLOAD)
    # The runs that hold a schedule's overlap policy: few, found without reading its history.
    op.execute(
        "CREATE INDEX ix_workflow_runs_schedule_id_unfinished ON workflow_runs "
        "(schedule_id, created_at) "
        "WHERE schedule_id IS NOT NULL AND NOT wfclock_run_finished(status)"
    )
    op.execute(FIRE)
    op.execute(FIRE_WITHOUT_TRACE)
    op.execute(RELEASE_BUFFERED)
    op.execute(RUN_FINISHED_TRIGGER)
    op.execute(
        "CREATE TRIGGER release_buffered_fire AFTER UPDATE OF status OR DELETE ON workflow_runs "
        "FOR EACH ROW EXECUTE FUNCTION wfclock_run_ended()"
    )
    op.execute(RUN_NOW)
    op.execute(
        "CREATE TABLE workflow_schedule_skip_counts (schedule_id uuid NOT NULL, "
        "reason text NOT NULL, fires bigint NOT NULL, "
        "CONSTRAINT pk_workflow_schedule_skip_counts PRIMARY KEY (schedule_id, reason))"
    )
    op.execute(COUNT_SKIP)
    op.execute(
        "CREATE TRIGGER count_skips AFTER INSERT ON workflow_schedule_fires FOR EACH ROW "
        "WHEN (NEW.outcome = 'skipped' AND NEW.kind = 'clock') "
        "EXECUTE FUNCTION wfclock_count_skip()"
    )
    op.execute(
        "CREATE TRIGGER count_skips_moved AFTER UPDATE OF outcome ON workflow_schedule_fires "
        "FOR EACH ROW WHEN (NEW.outcome = 'skipped' AND OLD.outcome <> 'skipped' "
        "AND NEW.kind = 'clock') EXECUTE FUNCTION wfclock_count_skip()"
    )
    op.execute(
        "INSERT INTO workflow_schedule_skip_counts (schedule_id, reason, fires) "
        "SELECT schedule_id, coalesce(substring(reason FROM '^[a-z-]+'), 'unknown'), count(*) "
        "FROM workflow_schedule_fires WHERE outcome = 'skipped' GROUP BY 1, 2"
    )
    for function in (
        f"{SIGNATURE}",
        "wfclock_release_buffered(uuid)",
        "wfclock_run_now(uuid, text, text, uuid, text)",
    ):
        op.execute(f"REVOKE ALL ON FUNCTION {function} FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION {SIGNATURE} TO wfclock_launcher")


def downgrade() -> None:
    op.execute("DROP TRIGGER count_skips_moved ON workflow_schedule_fires")
    op.execute("DROP TRIGGER count_skips ON workflow_schedule_fires")
    op.execute("DROP FUNCTION wfclock_count_skip()")
    op.execute("DROP TABLE workflow_schedule_skip_counts")
    op.execute("DROP FUNCTION wfclock_run_now(uuid, text, text, uuid, text)")
    op.execute("DROP TRIGGER release_buffered_fire ON workflow_runs")
    op.execute("DROP FUNCTION wfclock_run_ended()")
    op.execute("DROP FUNCTION wfclock_release_buffered(uuid)")
    # The 0004 form back as it was (its grants stay with it).
    op.execute(_previous_fire())
    op.execute(f"DROP FUNCTION {SIGNATURE}")
    op.execute("DROP INDEX ix_workflow_runs_schedule_id_unfinished")
    op.execute(
        "DROP FUNCTION wfclock_clock_payload(text, uuid, text, uuid, integer, text, text, text)"
    )
    op.execute("DROP FUNCTION wfclock_utc_iso(timestamptz)")
    op.execute("DROP FUNCTION wfclock_run_finished(text)")
    op.execute("DROP INDEX ix_workflow_schedule_fires_schedule_id_buffered")
    # Buffered fires never ran: what 0004 can hold of them is a skip.
    op.execute(
        "UPDATE workflow_schedule_fires SET outcome = 'skipped', "
        "reason = 'overlap: still buffered when wfclock was downgraded' "
        "WHERE outcome = 'buffered'"
    )
    op.execute(
        "ALTER TABLE workflow_schedule_fires "
        "DROP CONSTRAINT ck_workflow_schedule_fires_outcome, "
        "ADD CONSTRAINT ck_workflow_schedule_fires_ck_workflow_schedule_fires_outcome "
        "CHECK (outcome IN ('launched', 'skipped')), "
        "DROP COLUMN traceparent, DROP COLUMN kind"
    )
    op.execute("ALTER TABLE workflow_schedules DROP COLUMN overlap_policy")
    op.execute("ALTER TABLE workflow_schedules DROP COLUMN pause_reason")
