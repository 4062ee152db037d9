"""A fire's key is left to the current trigger when a Job of another registration delivers it.

An edit of a recurring trigger (its cron or zone) published just before a fire and reconciled
just after it leaves the CronJob controller making that fire's Job from the CronJob as it was:
the Job carries the old cron and zone. The instant is at or after the trigger's last change
(`trigger_effective_from`), so the current trigger owes it when it fires then (a cron edit that
keeps the instant, a zone with the same offset). 0005's `wfclock_fire` claimed the key as
skipped ("superseded: the Job was created for another cron or time zone"), so the fire the new
trigger owed could never launch: the accounting sweep found its key spent. From here such a
delivery is refused without claiming the key (the launcher answers `skipped`, nothing is
written); the accounting sweep delivers the instant by the current trigger when it is one of
its fires, and nothing claims it when it is not. A delivery before the change, or one refused
for any other reason (paused, deleted, disabled ...), is recorded as before. Same signature:
the grants of 0005 stay.

Revision ID: 0006
Revises: 0005
"""

import importlib.util
from pathlib import Path

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

FIRE = r"""
CREATE OR REPLACE FUNCTION wfclock_fire(
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
    v_unclaimed text;
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
            END AS refusal,
            -- A Job of another registration delivering an instant at or after the trigger's
            -- last change (an edit published just before a fire and reconciled after it, when
            -- the CronJob controller made the Job from the CronJob as it was): the instant
            -- belongs to the current trigger, which may owe it. Its key is left unclaimed; the
            -- accounting sweep delivers it by the current trigger if that trigger fires then.
            coalesce(deleted_at IS NULL AND enabled AND status = 'scheduled'
                     AND trigger_type = 'recurring' AND p_at >= trigger_effective_from
                     AND NOT coalesce(quiet @> p_at, false)
                     AND (cron IS DISTINCT FROM p_cron OR timezone IS DISTINCT FROM p_timezone),
                     false) AS unclaimed
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
        FROM verdict WHERE NOT unclaimed
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
           (SELECT count(*) FROM notify),
           (SELECT v.verdict_reason FROM verdict v WHERE v.unclaimed)
        INTO v_found, v_claimed, v_outcome, v_reason, v_notified, v_unclaimed;
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
        IF NOT FOUND AND v_unclaimed IS NOT NULL THEN
            RETURN QUERY SELECT 'skipped'::text, NULL::uuid,
                v_unclaimed || '; its key is left to the current trigger';
        END IF;
        RETURN;
    END IF;
    RETURN QUERY SELECT v_outcome, CASE WHEN v_outcome = 'launched' THEN p_run_id END, v_reason;
END
$fn$
"""


def _previous_fire() -> str:
    """0005's statement, read from its migration beside this one (Alembic loads migrations by
    path, not as modules of a package)."""
    path = Path(__file__).with_name("0005_run_control.py")
    spec = importlib.util.spec_from_file_location("wfclock_migration_0005", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.FIRE.replace(
        "CREATE FUNCTION wfclock_fire(", "CREATE OR REPLACE FUNCTION wfclock_fire(", 1
    )


def upgrade() -> None:
    op.execute(FIRE)


def downgrade() -> None:
    op.execute(_previous_fire())
