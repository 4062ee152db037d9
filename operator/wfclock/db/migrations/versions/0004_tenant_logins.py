"""Tenant logins: what a launcher pod holds can fire its own tenant's schedules and nothing else.

A tenant's launcher login (a member of `wfclock_launcher`) has no privilege on any table; it may
only execute `wfclock_fire`, a SECURITY DEFINER function that checks the schedule belongs to the
login's tenant (`wfclock_tenant_logins`) and then claims the fire exactly as before: lock the
schedule row and decide from its state, claim the fire key, insert the run with its fixed
payload, update the state, notify workers. The administrator (the operator, the CLI), who is no
member of `wfclock_launcher`, calls the same function without the tenant check. The statement is
frozen here; a later change of the claim is a new migration that replaces the function.

Revision ID: 0004
Revises: 0003
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

SIGNATURE = (
    "wfclock_fire(uuid, timestamptz, text, text, text, text, text, boolean, timestamptz, uuid, "
    "text, text, text)"
)

FUNCTION = r"""
CREATE OR REPLACE FUNCTION wfclock_fire(
    p_schedule_id uuid, p_at timestamptz, p_key text, p_at_iso text, p_now_iso text,
    p_cron text, p_timezone text, p_is_fire boolean, p_next_fire timestamptz, p_run_id uuid,
    p_source text, p_schema_ref text, p_channel text)
RETURNS TABLE (r_outcome text, r_run_id uuid, r_reason text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $fn$
#variable_conflict use_column
DECLARE
    v_tenant text;
    v_found bigint;
    v_claimed bigint;
    v_reason text;
    v_notified bigint;
    v_at_iso text;
BEGIN
    -- A launcher login is a direct member of wfclock_launcher (pg_has_role would also say
    -- yes for a superuser, who is the administrator here).
    IF EXISTS (SELECT 1 FROM pg_auth_members m
               JOIN pg_roles g ON g.oid = m.roleid AND g.rolname = 'wfclock_launcher'
               JOIN pg_roles u ON u.oid = m.member AND u.rolname = session_user) THEN
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
    v_at_iso := to_char(p_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS')
        || CASE WHEN date_trunc('second', p_at) = p_at THEN ''
                ELSE to_char(p_at AT TIME ZONE 'UTC', '.MS') END || 'Z';
    IF p_key IS DISTINCT FROM 'workflow-schedule-fire:' || p_schedule_id || ':' || v_at_iso THEN
        RAISE EXCEPTION 'fire key % is not the key of schedule % at %', p_key, p_schedule_id,
            v_at_iso USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_at > now() + interval '60 seconds' THEN
        RAISE EXCEPTION 'the fire of % is not due yet', v_at_iso
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    p_at_iso := v_at_iso;
    p_schema_ref := 'payload.WorkflowClockTrigger.v1';
    p_channel := 'wfclock_runs';
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
            END AS reason
        FROM workflow_schedules s WHERE schedule_id = p_schedule_id FOR UPDATE
    ), claim AS (
        INSERT INTO workflow_schedule_fires
            (fire_key, schedule_id, scheduled_for, outcome, reason, run_id, source)
        SELECT p_key, schedule_id, p_at,
               CASE WHEN reason IS NULL THEN 'launched' ELSE 'skipped' END, reason,
               CASE WHEN reason IS NULL THEN p_run_id::uuid END, p_source
        FROM schedule
        ON CONFLICT (fire_key) DO NOTHING
        RETURNING fire_key, run_id, reason
    ), run AS (
        INSERT INTO workflow_runs
            (run_id, tenant, workflow_id, workflow_version, status, payload, payload_schema_ref,
             trigger_type, trigger_metadata, trigger_fire_key, schedule_id)
        SELECT claim.run_id, s.tenant, s.workflow_id, s.workflow_version, 'queued',
               -- payload.WorkflowClockTrigger.v1: schedule metadata only, nothing from outside
               jsonb_build_object(
                   'triggerType', s.trigger_type, 'scheduleId', s.schedule_id::text,
                   'scheduledFor', p_at_iso::text, 'firedAt', p_now_iso::text,
                   'timezone', s.timezone, 'workflowId', s.workflow_id::text,
                   'workflowVersion', s.workflow_version)
               || CASE WHEN s.trigger_type = 'recurring' THEN jsonb_build_object('cron', s.cron)
                       ELSE '{}'::jsonb END,
               p_schema_ref, s.trigger_type,
               jsonb_build_object('fireKey', claim.fire_key, 'source', p_source::text)
               || CASE WHEN p_is_fire THEN '{}'::jsonb
                       ELSE jsonb_build_object('note', 'this instant is not a fire of the cron by '
                            || 'the launcher''s time-zone data; the CronJob controller''s counts') END,
               claim.fire_key, s.schedule_id
        FROM claim, schedule s WHERE claim.run_id IS NOT NULL
        RETURNING run_id, tenant
    ), state AS (
        UPDATE workflow_schedules s SET
            last_fire_at = CASE WHEN claim.run_id IS NOT NULL THEN p_at ELSE s.last_fire_at END,
            last_fire_key = CASE WHEN claim.run_id IS NOT NULL THEN claim.fire_key
                                 ELSE s.last_fire_key END,
            last_run_id = coalesce(claim.run_id, s.last_run_id),
            last_run_status = CASE WHEN claim.run_id IS NOT NULL THEN 'queued' ELSE 'skipped' END,
            last_error = CASE WHEN claim.run_id IS NOT NULL THEN NULL ELSE s.last_error END,
            fire_problem = CASE WHEN claim.run_id IS NOT NULL
                                 AND p_source NOT IN ('recovery', 'catch-up', 'backfill')
                                THEN NULL ELSE s.fire_problem END,
            status = CASE WHEN claim.run_id IS NOT NULL AND s.trigger_type = 'schedule'
                          THEN 'completed' ELSE s.status END,
            -- Only a launched fire belongs to the current trigger: a refused one must not move
            -- next_fire_at by the cron it was planned under.
            next_fire_at = CASE WHEN claim.run_id IS NULL THEN s.next_fire_at
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
           (SELECT c.reason FROM claim c), (SELECT count(*) FROM notify)
        INTO v_found, v_claimed, v_reason, v_notified;
    IF v_found = 0 THEN
        RETURN QUERY SELECT 'unknown'::text, NULL::uuid, NULL::text;
        RETURN;
    END IF;
    IF v_claimed = 0 THEN
        -- Deliveries of one schedule are serialised by its row lock: the first claim is
        -- committed and visible to this new statement. Counted, never a second run.
        RETURN QUERY
        UPDATE workflow_schedule_fires f
        SET attempts = f.attempts + 1, last_delivered_at = now()
        WHERE f.fire_key = p_key
        RETURNING 'duplicate'::text, f.run_id, coalesce(f.reason, 'first ' || f.outcome);
        RETURN;
    END IF;
    IF v_reason IS NOT NULL THEN
        RETURN QUERY SELECT 'skipped'::text, NULL::uuid, v_reason;
        RETURN;
    END IF;
    RETURN QUERY SELECT 'launched'::text, p_run_id, NULL::text;
END
$fn$
"""


def upgrade() -> None:
    # Roles belong to the whole server: created once, kept by a downgrade.
    op.execute(
        "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'wfclock_launcher') "
        "THEN CREATE ROLE wfclock_launcher NOLOGIN; END IF; END $$"
    )
    op.execute(
        """
        CREATE TABLE wfclock_tenant_logins (
            role_name text PRIMARY KEY,
            tenant text NOT NULL UNIQUE,
            -- a fingerprint of the current password, so a restart rewrites nothing
            credential text NOT NULL,
            updated_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute(FUNCTION)
    op.execute(f"REVOKE ALL ON FUNCTION {SIGNATURE} FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION {SIGNATURE} TO wfclock_launcher")
    op.execute("REVOKE ALL ON ALL TABLES IN SCHEMA public FROM PUBLIC, wfclock_launcher")
    # Nobody but the owner creates objects the function's search path could find (the default
    # since PostgreSQL 15; a warning, not an error, where the migrating user does not own it).
    op.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")


def downgrade() -> None:
    op.execute(f"DROP FUNCTION {SIGNATURE}")
    op.execute("DROP TABLE wfclock_tenant_logins")
