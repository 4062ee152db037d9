"""Calendars and bounded schedules: refusals the launcher reads from the database's state.

- `workflow_calendars` / `workflow_calendar_dates`: what the operator derives from each
  WorkflowCalendar (per namespace and name): the excluded dates with why (a holiday's name, an
  explicit date or range), "business days only", and the horizon of dates it wrote (this year
  and next, refreshed by the operator). A launcher login reads none of it: only
  `wfclock_fire` (SECURITY DEFINER, tenant-checked) does, for the schedule it fires.
- `workflow_schedules` gains `calendars` (the names a recurring schedule references, in its own
  namespace), `active_from`, `active_until`, `max_fires`, `jitter_seconds` and `end_reason`
  (why an ended schedule ended; its status is then `completed`).
- `workflow_schedule_clock_launches`: the clock fires each schedule launched (or buffered),
  kept by a trigger and never pruned with the ledger, which `max_fires` is counted against.
- `wfclock_policy_refusal(schedule, instant)`: NULL when the fire is allowed, else the reason
  (`before-active-from`, `after-active-until`, `max-fires-reached`,
  `calendar:<name>:<holiday>`, `calendar:<name>:weekend`, `calendar:<name>:missing`,
  `calendar:<name>:beyond-horizon`).
- `wfclock_fire` (same arguments) asks it under the schedule's row lock, where the state's
  refusals are decided: one line (`ELSE wfclock_policy_refusal(s.schedule_id, p_at)`), added to
  the function as the database holds it (read back with `pg_get_functiondef`), so this
  migration keeps whatever an earlier one changed in it, and its downgrade removes just that.

Revision ID: 0007
Revises: 0006
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# The date of a fire is its date in the schedule's own zone. A missing calendar refuses every
# fire (fail closed: a holiday calendar that did not arrive must not let the holiday run), and
# so does a date the operator has not derived yet (beyond the horizon it wrote).
POLICY_REFUSAL = r"""
CREATE FUNCTION wfclock_policy_refusal(p_schedule_id uuid, p_at timestamptz) RETURNS text
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, public, pg_temp AS $fn$
DECLARE
    v_s record;
    v_day date;
    v_name text;
    v_cal record;
    v_reason text;
BEGIN
    SELECT s.namespace, s.timezone, s.calendars, s.active_from, s.active_until, s.max_fires
    INTO v_s FROM workflow_schedules s WHERE s.schedule_id = p_schedule_id;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF v_s.active_from IS NOT NULL AND p_at < v_s.active_from THEN
        RETURN 'before-active-from';
    END IF;
    IF v_s.active_until IS NOT NULL AND p_at > v_s.active_until THEN
        RETURN 'after-active-until';
    END IF;
    IF v_s.max_fires IS NOT NULL AND coalesce((
            SELECT c.fires FROM workflow_schedule_clock_launches c
            WHERE c.schedule_id = p_schedule_id), 0) >= v_s.max_fires THEN
        RETURN 'max-fires-reached';
    END IF;
    v_day := (p_at AT TIME ZONE v_s.timezone)::date;
    FOREACH v_name IN ARRAY coalesce(v_s.calendars, '{}') LOOP
        SELECT * INTO v_cal FROM workflow_calendars c
        WHERE c.namespace = v_s.namespace AND c.name = v_name;
        IF NOT FOUND THEN
            RETURN 'calendar:' || v_name || ':missing';
        END IF;
        IF v_day < v_cal.horizon_start OR v_day > v_cal.horizon_end THEN
            RETURN 'calendar:' || v_name || ':beyond-horizon';
        END IF;
        SELECT d.reason INTO v_reason FROM workflow_calendar_dates d
        WHERE d.namespace = v_s.namespace AND d.calendar = v_name AND d.day = v_day;
        IF FOUND THEN
            RETURN 'calendar:' || v_name || ':' || v_reason;
        END IF;
        IF v_cal.business_days_only AND extract(isodow FROM v_day) >= 6 THEN
            RETURN 'calendar:' || v_name || ':weekend';
        END IF;
    END LOOP;
    RETURN NULL;
END
$fn$
"""

COUNT_LAUNCH = r"""
CREATE FUNCTION wfclock_count_clock_launch() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        -- A buffered fire that is refused when released never ran: it no longer counts.
        UPDATE workflow_schedule_clock_launches SET fires = fires - 1
        WHERE schedule_id = NEW.schedule_id;
        RETURN NULL;
    END IF;
    INSERT INTO workflow_schedule_clock_launches AS c (schedule_id, fires)
    VALUES (NEW.schedule_id, 1)
    ON CONFLICT (schedule_id) DO UPDATE SET fires = c.fires + 1;
    RETURN NULL;
END
$fn$
"""

# The one change to 0005's statement, where the state's refusals are decided.
_OLD_REFUSAL_END = """                THEN 'superseded: the Job was created for another cron or time zone'
            END AS refusal"""
_NEW_REFUSAL_END = """                THEN 'superseded: the Job was created for another cron or time zone'
            ELSE wfclock_policy_refusal(s.schedule_id, p_at)
            END AS refusal"""


# Every plpgsql form of wfclock_fire as the database holds it now (whichever migration wrote it
# last: 0005's, or a later one's that this one was chained after), patched in place.
_FIRE_DEFINITIONS = """
SELECT p.oid::regprocedure::text, pg_get_functiondef(p.oid) FROM pg_proc p
JOIN pg_language l ON l.oid = p.prolang AND l.lanname = 'plpgsql'
WHERE p.proname = 'wfclock_fire' ORDER BY 1
"""


def _patch_fire(old: str, new: str) -> None:
    # The driver's own connection (same transaction): the statement holds ':' and '%', which
    # neither SQLAlchemy's text() nor a parameterised execute may read as placeholders.
    raw = op.get_bind().connection.driver_connection
    definitions = raw.execute(_FIRE_DEFINITIONS).fetchall()
    if not definitions:
        raise RuntimeError("no plpgsql wfclock_fire to give the policy refusal to")
    for signature, definition in definitions:
        if definition.count(old) != 1:
            raise RuntimeError(f"{signature} has no single place for the policy refusal")
        raw.execute(definition.replace(old, new))


def upgrade() -> None:
    op.execute(
        "CREATE TABLE workflow_calendars (namespace text NOT NULL, name text NOT NULL, "
        "business_days_only boolean NOT NULL DEFAULT false, horizon_start date NOT NULL, "
        "horizon_end date NOT NULL, holidays_version text, "
        "updated_at timestamptz NOT NULL DEFAULT now(), "
        "CONSTRAINT pk_workflow_calendars PRIMARY KEY (namespace, name))"
    )
    op.execute(
        "CREATE TABLE workflow_calendar_dates (namespace text NOT NULL, calendar text NOT NULL, "
        "day date NOT NULL, reason text NOT NULL, "
        "CONSTRAINT pk_workflow_calendar_dates PRIMARY KEY (namespace, calendar, day), "
        "CONSTRAINT fk_workflow_calendar_dates_calendar FOREIGN KEY (namespace, calendar) "
        "REFERENCES workflow_calendars (namespace, name) ON DELETE CASCADE)"
    )
    op.execute(
        "ALTER TABLE workflow_schedules "
        "ADD COLUMN calendars text[] NOT NULL DEFAULT '{}', "
        "ADD COLUMN active_from timestamptz, ADD COLUMN active_until timestamptz, "
        "ADD COLUMN max_fires integer CONSTRAINT ck_workflow_schedules_max_fires "
        "CHECK (max_fires >= 1), "
        "ADD COLUMN jitter_seconds integer NOT NULL DEFAULT 0, "
        "ADD COLUMN end_reason text"
    )
    op.execute(
        "CREATE TABLE workflow_schedule_clock_launches (schedule_id uuid NOT NULL, "
        "fires bigint NOT NULL, "
        "CONSTRAINT pk_workflow_schedule_clock_launches PRIMARY KEY (schedule_id))"
    )
    op.execute(
        "INSERT INTO workflow_schedule_clock_launches (schedule_id, fires) "
        "SELECT schedule_id, count(*) FROM workflow_schedule_fires "
        "WHERE kind = 'clock' AND outcome IN ('launched', 'buffered') GROUP BY 1"
    )
    op.execute(COUNT_LAUNCH)
    op.execute(
        "CREATE TRIGGER count_clock_launches AFTER INSERT ON workflow_schedule_fires "
        "FOR EACH ROW WHEN (NEW.kind = 'clock' AND NEW.outcome IN ('launched', 'buffered')) "
        "EXECUTE FUNCTION wfclock_count_clock_launch()"
    )
    op.execute(
        "CREATE TRIGGER uncount_refused_buffered AFTER UPDATE OF outcome "
        "ON workflow_schedule_fires FOR EACH ROW WHEN (NEW.kind = 'clock' "
        "AND OLD.outcome = 'buffered' AND NEW.outcome = 'skipped') "
        "EXECUTE FUNCTION wfclock_count_clock_launch()"
    )
    # Its reasons hold ':word', which SQLAlchemy's text() would read as a bind parameter.
    op.get_bind().exec_driver_sql(POLICY_REFUSAL)
    op.execute("REVOKE ALL ON FUNCTION wfclock_policy_refusal(uuid, timestamptz) FROM PUBLIC")
    _patch_fire(_OLD_REFUSAL_END, _NEW_REFUSAL_END)


def downgrade() -> None:
    _patch_fire(_NEW_REFUSAL_END, _OLD_REFUSAL_END)
    op.execute("DROP FUNCTION wfclock_policy_refusal(uuid, timestamptz)")
    op.execute("DROP TRIGGER uncount_refused_buffered ON workflow_schedule_fires")
    op.execute("DROP TRIGGER count_clock_launches ON workflow_schedule_fires")
    op.execute("DROP FUNCTION wfclock_count_clock_launch()")
    op.execute("DROP TABLE workflow_schedule_clock_launches")
    # An ended recurring schedule has no 0005 form: it runs again (its CronJob comes back).
    op.execute(
        "UPDATE workflow_schedules SET status = 'scheduled' "
        "WHERE trigger_type = 'recurring' AND status = 'completed'"
    )
    op.execute(
        "ALTER TABLE workflow_schedules DROP COLUMN end_reason, DROP COLUMN jitter_seconds, "
        "DROP COLUMN max_fires, DROP COLUMN active_until, DROP COLUMN active_from, "
        "DROP COLUMN calendars"
    )
    op.execute("DROP TABLE workflow_calendar_dates")
    op.execute("DROP TABLE workflow_calendars")
