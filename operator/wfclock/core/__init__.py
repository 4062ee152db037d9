"""The pure core of wfclock: the resource model and its validation, cron and time-zone maths, fire
keys and instants, child names, object builders and status. No I/O and no clock of its own (the
time is always passed in); no kopf, Kubernetes client, SQLAlchemy or psycopg
(`tests/unit/test_core_purity.py` checks it). This file imports nothing, so the launcher, which
needs only `fires` and `firetime`, does not pay for the rest.
"""
