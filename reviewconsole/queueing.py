"""Hand work to a later stage by dotted path, after the current transaction commits.

Redis is only the transport: the rows that say what is pending are already committed when this
runs, so a failed enqueue is logged and left to the sweep, never raised to the caller.
"""

import logging

import django_rq
from django.db import transaction

log = logging.getLogger(__name__)
# Results live in the database; keeping them in Redis too only costs round trips.
RESULT_TTL = 0


def enqueue_now(func_path, *args, queue="default", **kwargs):
    try:
        django_rq.get_queue(queue).enqueue(func_path, *args, result_ttl=RESULT_TTL, **kwargs)
        return True
    except Exception as exc:  # redis down, flushed mid-call, bad socket...
        log.warning("could not enqueue %s%r on %s (%s); the sweep will retry", func_path, args, queue, exc)
        return False


def enqueue(func_path, *args, queue="default", **kwargs):
    """Enqueue `func_path(*args)` once the surrounding transaction (if any) has committed."""
    transaction.on_commit(lambda: enqueue_now(func_path, *args, queue=queue, **kwargs))
