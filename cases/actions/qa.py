"""Blind QA: a share of decisions sampled for a senior's judgement."""

import random
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from cases.actions import ActionError
from cases.models import Action, QAReview
from reviewconsole.audit.events import Event
from reviewconsole.audit.recorder import audit

_qa_random = random.SystemRandom()




def sample_for_qa_many(decisions):
    """A share of decisions goes to blind QA (QA_SAMPLE_RATE of people's, a rule's own share of a rule's):
    each drawn on its own, the samples written with one statement."""
    rates = {}
    sampled = []
    for decision in decisions:
        if decision.rule_version_id:
            if decision.rule_version_id not in rates:
                rates[decision.rule_version_id] = rule_qa_rate(decision.rule_version)
            rate = rates[decision.rule_version_id]
        else:
            rate = settings.QA_SAMPLE_RATE
        if decision.action != Action.ESCALATE and _qa_random.random() < rate:
            sampled.append(QAReview(decision=decision))
    # A decision sampled already keeps its sample (one per decision), as get_or_create did.
    QAReview.objects.bulk_create(sampled, ignore_conflicts=True)


def rule_qa_rate(version):
    """The share of a rule's decisions that go to blind QA: higher while its current version is new."""
    rule = version.rule
    new = version.created_at is None or timezone.now() - version.created_at < timedelta(days=rule.new_days)
    return (rule.qa_percent_new if new else rule.qa_percent) / 100


def record_qa(user, qa_id, *, action, note=""):
    """A senior's blind judgement of a sampled decision; the first one stands."""
    if action not in Action.values or action == Action.ESCALATE:
        raise ActionError("Choose what you would have decided.")
    with transaction.atomic():
        qa = QAReview.objects.select_for_update().select_related("decision").filter(pk=qa_id).first()
        if qa is None or qa.reviewed_at:
            raise ActionError("This sample was already reviewed.")
        if qa.decision.decided_by_id == user.pk:
            raise ActionError("Your own decisions go to someone else for QA.")
        qa.reviewer, qa.action, qa.note, qa.reviewed_at = user, action, note, timezone.now()
        qa.agrees = action == qa.decision.action
        qa.save()
        audit(user, Event.QA_REVIEWED, case=qa.decision.case, object_type="qareview", object_id=qa.pk,
              details={"agrees": qa.agrees})
    return qa
