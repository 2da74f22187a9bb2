"""Periodic jobs for `manage.py rqcron reviewconsole.cron`: the sweep, so nothing waits forever."""

from django.conf import settings
from rq import cron

from cases.preservation import purge_job, verify_job
from cases.queues import age_priorities
from cases.sweep import sweep_job

cron.register(sweep_job, queue_name="default", interval=settings.SWEEP_INTERVAL_SECONDS, job_timeout=300)
cron.register(age_priorities, queue_name="default", interval=300, job_timeout=600)
# Retention purge and chain-of-custody check, once a day each (at night, UTC).
cron.register(purge_job, queue_name="default", cron="30 2 * * *", job_timeout=3600)
cron.register(verify_job, queue_name="default", cron="45 3 * * *", job_timeout=3600)
