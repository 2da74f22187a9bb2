"""Periodic jobs for `manage.py rqcron reviewconsole.cron`: the sweep, so nothing waits forever."""

from django.conf import settings
from rq import cron

from cases.actions.preservation import purge_job, verify_job
from cases.dsa import statements_job
from cases.jobs import alert_unreported, apply_rules_recent, finish_cluster_actions, refresh_reporters
from cases.metrics import rollup_recent
from cases.routing import age_priorities
from cases.selectors import refresh_queue_stats
from cases.sweep import rescan_lapsed, sweep_job

cron.register(sweep_job, queue_name="default", interval=settings.SWEEP_INTERVAL_SECONDS, job_timeout=300)
# A dead worker's scan claims, soon after they lapse: on the scan queue, ahead of a classification
# backlog, and cheap enough (one indexed query) to run every few seconds.
cron.register(rescan_lapsed, queue_name="scan", interval=settings.LEASE_CHECK_SECONDS, job_timeout=60)
cron.register(age_priorities, queue_name="default", interval=300, job_timeout=600)
# The queue page's counts where there are too many open cases to count on each visit.
cron.register(refresh_queue_stats, queue_name="default", interval=settings.QUEUE_STATS_SECONDS, job_timeout=120)
# Automation rules over cases whose triage job was lost (the rules run in triage; this is the net).
cron.register(apply_rules_recent, queue_name="default", interval=300, job_timeout=600)
# The "confirmed, not reported" alarm: a reportable decision whose report is overdue.
cron.register(alert_unreported, queue_name="default", interval=900, job_timeout=300)
# Metrics behind the dashboard: today and yesterday again, plus any day never rolled up.
cron.register(rollup_recent, queue_name="default", interval=600, job_timeout=1800)
# Reporters' standing from how their reports' cases were decided: what a new report weighs.
cron.register(refresh_reporters, queue_name="default", interval=600, job_timeout=900)
# Approved bulk actions on clusters whose job was lost: carried out again (decided members are skipped).
cron.register(finish_cluster_actions, queue_name="default", interval=120, job_timeout=900)
# Statements of reasons for any restriction still lacking one; sent to the DSA database once DSA_TDB_TOKEN is set.
cron.register(statements_job, queue_name="default", interval=300, job_timeout=600)
# Retention purge and chain-of-custody check, once a day each (at night, UTC).
cron.register(purge_job, queue_name="default", cron="30 2 * * *", job_timeout=3600)
cron.register(verify_job, queue_name="default", cron="45 3 * * *", job_timeout=3600)
# NCMEC hash sharing, hourly, only where the console has credentials for it.
if settings.NCMEC_HASH_API_USER and settings.NCMEC_HASH_API_PASSWORD:
    from detection.exchange import fetch_job  # noqa: PLC0415 - threatexchange loads only when used
    from detection.hash_quality import send_pending_feedback  # noqa: PLC0415 - the same

    cron.register(fetch_job, queue_name="default", interval=3600, job_timeout=6 * 3600)
    # What reviewers made of NCMEC's entries goes back to NCMEC (confirmed: positive; dismissed: negative).
    cron.register(send_pending_feedback, queue_name="default", interval=3600, job_timeout=3600)
