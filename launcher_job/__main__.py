"""`python -m launcher_job`: the command of every wfclock Job's container.

Environment: WFCLOCK_DATABASE_URL, WFCLOCK_SCHEDULE_ID, and either WFCLOCK_JOB_NAME (the
CronJob-created Job's name, from the downward API) or WFCLOCK_SCHEDULED_FOR (RFC 3339, one-time
Jobs). Optional WFCLOCK_CRONJOB_NAME makes the Job name check exact.

Prints one JSON line and exits 0 (launched, duplicate, skipped), 75 when a retry may succeed
(database unreachable), or 2 for unusable input. Imports neither kopf nor the Kubernetes client.
"""

import sys

from launcher_job.main import main

sys.exit(main())
