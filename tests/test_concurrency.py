"""Many reviewers claiming at once never get the same case (PostgreSQL: SKIP LOCKED; SQLite:
conditional UPDATE). Real threads, each with its own database connection."""

import threading

import pytest
from django.db import connection, connections

from cases.actions.claims import claim_next_case
from cases.models import Case, CaseStatus, ReviewQueue
from detection.models import Account
from tests.conftest import make_user

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)
CLAIMERS, CASES = 8, 60


def test_concurrent_claimers_never_share_a_case():
    queue = ReviewQueue.objects.get(slug="known-material")
    accounts = Account.objects.bulk_create([Account(external_id=f"c-{n}") for n in range(CASES)])
    Case.objects.bulk_create([Case(account=a, queue=queue, priority=n % 7) for n, a in enumerate(accounts)])
    users = [make_user(f"claimer{n}", "reviewer") for n in range(CLAIMERS)]
    claimed, errors = [], []
    start = threading.Barrier(CLAIMERS)

    def work(user):
        try:
            start.wait()
            while True:
                case = claim_next_case(user)
                if case is None:
                    return
                claimed.append((case.pk, user.pk))
                # Finish it so the next claim takes a new one (a claimer holds one case at a time).
                Case.objects.filter(pk=case.pk).update(status=CaseStatus.CLOSED)
        except Exception as exc:  # noqa: BLE001 - reported below, with the thread's name
            errors.append(repr(exc))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=work, args=(u,)) for u in users]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    case_ids = [pk for pk, _ in claimed]
    assert len(case_ids) == len(set(case_ids)) == CASES  # every case once, none twice
    assert len({user for _, user in claimed}) > 1  # the work really was shared
    assert connection.vendor in ("sqlite", "postgresql")
