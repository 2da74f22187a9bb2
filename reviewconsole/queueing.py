"""Hand work to a later stage by dotted path, after the current transaction commits.

Redis is only the transport: the rows that say what is pending are already committed when this
runs, so a failed enqueue is logged and left to the sweep, never raised to the caller.
"""

import logging
import os
from datetime import timedelta

import django_rq
from django.db import transaction

log = logging.getLogger(__name__)
# Results live in the database; keeping them in Redis too only costs round trips.
RESULT_TTL = 0


_QUEUES = {}


def _queue(name):
    """The RQ queue `name`, one per process: django-rq opens a new Redis connection pool for every
    get_queue, which costs more than the enqueue itself when a batch of decisions hands on its work.
    Keyed by process id as well, so a forked process never shares its parent's sockets."""
    key = (os.getpid(), name)
    queue = _QUEUES.get(key)
    if queue is None:
        queue = _QUEUES[key] = django_rq.get_queue(name)
    return queue


def enqueue_now(func_path, *args, queue="default", delay=0, **kwargs):
    try:
        target = _queue(queue)
        if delay > 0:
            # Held in RQ's scheduled registry; workers started --with-scheduler move it when due.
            target.enqueue_in(timedelta(seconds=delay), func_path, *args, result_ttl=RESULT_TTL, **kwargs)
        else:
            target.enqueue(func_path, *args, result_ttl=RESULT_TTL, **kwargs)
        return True
    except Exception as exc:  # redis down, flushed mid-call, bad socket...
        log.warning("could not enqueue %s%r on %s (%s); the sweep will retry", func_path, args, queue, exc)
        return False


def enqueue(func_path, *args, queue="default", delay=0, **kwargs):
    """Enqueue `func_path(*args)` once the surrounding transaction (if any) has committed."""
    transaction.on_commit(lambda: enqueue_now(func_path, *args, queue=queue, delay=delay, **kwargs))


KICK_TTL = 60


def kick(key, func_path, *args, queue="default", **options):
    """Enqueue `func_path(*args)` unless a kick under `key` is still waiting to start.

    The job calls `kicked(key)` when it starts, so work committed after that start kicks again and
    no wake-up is lost; a kick whose job vanished (worker died, Redis flushed) lapses after KICK_TTL.
    """
    try:
        conn = django_rq.get_connection(queue)
        if not conn.set(f"reviewconsole:kick:{key}", 1, nx=True, ex=KICK_TTL):
            return False
    except Exception as exc:
        log.warning("could not kick %s (%s); the sweep will retry", key, exc)
        return False
    if not enqueue_now(func_path, *args, queue=queue, **options):
        kicked(key, queue=queue)
        return False
    return True


def kicked(key, queue="default"):
    try:
        django_rq.get_connection(queue).delete(f"reviewconsole:kick:{key}")
    except Exception as exc:
        log.warning("could not clear kick %s (%s)", key, exc)


def kick_after_commit(key, func_path, *args, queue="default", **options):
    transaction.on_commit(lambda: kick(key, func_path, *args, queue=queue, **options))
