"""Notes on a subject (an account or a group): they follow it into every later case."""

from django.db import transaction

from cases.actions import ActionError
from cases.models import SubjectNote
from reviewconsole.audit.events import Event
from reviewconsole.audit.recorder import audit

MAX_NOTE = 4000


def add_note(user, case, text, ip=None):
    """A reviewer's note on the subject of `case`, written with its audit row or not at all."""
    text = (text or "").strip()
    if not text or len(text) > MAX_NOTE:
        raise ActionError(f"A note needs some text (at most {MAX_NOTE} characters).")
    with transaction.atomic():
        note = SubjectNote.objects.create(account_id=case.account_id, group_id=case.group_id, case=case,
                                          author=user, text=text)
        audit(user, Event.SUBJECT_NOTE_ADDED, case=case, object_type="subjectnote", object_id=note.pk, ip=ip)
    return note
