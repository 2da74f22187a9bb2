"""Periodic jobs for `manage.py rqcron reviewconsole.cron`: the sweep, so nothing waits forever."""

from django.conf import settings
from rq import cron

from cases.sweep import sweep_job

cron.register(sweep_job, queue_name="default", interval=settings.SWEEP_INTERVAL_SECONDS, job_timeout=300)
