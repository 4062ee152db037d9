"""`python -m launcher_job`: the command of every wfclock Job's container.

Environment: WFCLOCK_DATABASE_URL, WFCLOCK_SCHEDULE_ID, and either WFCLOCK_JOB_NAME (the
CronJob-created Job's name, from the downward API) or WFCLOCK_SCHEDULED_FOR (RFC 3339, one-time
Jobs). Optional WFCLOCK_CRONJOB_NAME makes the Job name check exact.

Prints one JSON line and exits 0 (launched, duplicate, skipped), 75 when a retry may succeed
(database unreachable, busy, read-only, statement timeout, SIGTERM), 2 for unusable input
(including a database without wfclock's tables or a role without rights), or 70 for an error
it does not know (with its traceback on stderr). Imports neither kopf nor the Kubernetes client.
"""

import signal
import sys

from launcher_job.main import main, raise_terminated

signal.signal(signal.SIGTERM, raise_terminated)
sys.exit(main())
