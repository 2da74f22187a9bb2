"""Tags on subjects: set and removed by investigators, audited, and idempotent."""

from django.db import IntegrityError, transaction
from django.utils import timezone

from cases.actions import ActionError
from cases.actions import reporters as reporter_actions
from cases.models import SubjectTag, TagKind
from detection.models import Account, Group, Reporter
from reviewconsole.audit.events import Event
from reviewconsole.audit.recorder import audit

MAX_TAG_NOTE = 500
# Tags that change how a subject may be actioned: only a senior sets or removes them.
SENIOR_TAGS = {TagKind.SENIOR_ONLY, TagKind.LEGAL_HOLD, TagKind.TRUSTED_FLAGGER}


def _may_tag(user, tag):
    if not user.is_authenticated or hasattr(user, "agency_member") or not user.has_perm("cases.investigate"):
        raise ActionError("Only investigators may tag accounts and groups.")
    if tag in SENIOR_TAGS and not user.has_perm("cases.review_escalated"):
        raise ActionError(f"Only a senior reviewer may set or remove “{TagKind(tag).label}”.")


def _subject_fields(subject):
    if isinstance(subject, Account):
        return "account", {"account": subject}
    if isinstance(subject, Group):
        return "group", {"group": subject}
    raise ActionError("Tags go on an account or a group.")


def tag_subject(user, subject, tag, note="", ip=None):
    """Set `tag` on an account or a group. A second add of a tag that is already on changes nothing and
    returns the live tag; returns (tag, created)."""
    if tag not in TagKind.values:
        raise ActionError("Choose one of the listed tags.")
    _may_tag(user, tag)
    note = (note or "").strip()
    if len(note) > MAX_TAG_NOTE:
        raise ActionError(f"A tag note is at most {MAX_TAG_NOTE} characters.")
    kind, fields = _subject_fields(subject)
    live = SubjectTag.objects.filter(**fields, tag=tag, removed_at__isnull=True)
    try:
        with transaction.atomic():
            existing = live.select_for_update().first()
            if existing:
                return existing, False
            row = SubjectTag.objects.create(**fields, tag=tag, note=note, set_by=user, set_at=timezone.now())
            audit(user, Event.SUBJECT_TAGGED, object_type=kind, object_id=subject.pk, ip=ip,
                  details={"tag": tag, "tag_id": row.pk, "note": note})
            if tag == TagKind.TRUSTED_FLAGGER and kind == "account":
                _flagger(user, subject, trusted=True, ip=ip)
    except IntegrityError:  # a concurrent add won the partial unique constraint: theirs is the one tag
        existing = live.first()
        if existing is None:
            raise
        return existing, False
    return row, True


def untag_subject(user, tag_id, ip=None):
    """Remove a live tag (stamping who and when; the row stays). Removing one already removed changes
    nothing. Returns (tag, removed)."""
    with transaction.atomic():
        row = SubjectTag.objects.select_for_update().filter(pk=tag_id).first()
        if row is None:
            raise ActionError("That tag does not exist.")
        _may_tag(user, row.tag)
        if row.removed_at is not None:
            return row, False
        row.removed_at, row.removed_by = timezone.now(), user
        row.save(update_fields=["removed_at", "removed_by"])
        kind = "account" if row.account_id else "group"
        audit(user, Event.SUBJECT_TAG_REMOVED, object_type=kind, object_id=row.account_id or row.group_id, ip=ip,
              details={"tag": row.tag, "tag_id": row.pk})
        if row.tag == TagKind.TRUSTED_FLAGGER and row.account_id:
            _flagger(user, row.account, trusted=False, ip=ip)
    return row, True


def _flagger(user, account, *, trusted, ip):
    """The "trusted flagger" tag on an account is its standing as a reporter: the two move together."""
    reporter, _ = Reporter.objects.get_or_create(external_id=account.external_id)
    if trusted:
        reporter_actions.trust_reporter(user, reporter.pk, ip=ip)
    else:
        reporter_actions.untrust_reporter(user, reporter.pk, ip=ip)
