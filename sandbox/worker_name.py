"""The sandbox's Celery workers' ``[core] hostname_callable``.

Both workers run on this one machine, so the host name Airflow records for each task instance (its
`hostname` column, shown in the UI) would be the same for both: each worker's tasks record the
worker's name instead, which is how the tests see which worker ran what. A deployment on Kubernetes
does the same with pod names."""

from __future__ import annotations

import os

ENV_VAR = "SANDBOX_CELERY_WORKER"


def hostname() -> str:
    return os.environ[ENV_VAR]
