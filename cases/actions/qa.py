"""Blind QA: a share of decisions sampled for a senior's judgement."""

import random

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from cases.actions import ActionError
from cases.models import Action, QAReview
from reviewconsole.audit.events import Event
from reviewconsole.audit.recorder import audit

_qa_random = random.SystemRandom()


def sample_for_qa(decision):
    if decision.action != Action.ESCALATE and _qa_random.random() < settings.QA_SAMPLE_RATE:
        QAReview.objects.get_or_create(decision=decision)


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
