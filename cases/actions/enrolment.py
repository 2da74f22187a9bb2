"""Issuing and using the one-time codes that authenticator enrolment needs."""

import secrets
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from cases.actions import ActionError
from cases.models import EnrolmentCode
from reviewconsole.audit.events import Event
from reviewconsole.audit.recorder import audit

ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O or 1/I to misread


def issue_enrolment_code(issuer, user, *, ip=None):
    """A new code for `user` (earlier unused ones stop working); returns the code, shown only now."""
    if not user.is_active:
        raise ActionError("That account is not active.")
    raw = "".join(secrets.choice(ALPHABET) for _ in range(16))
    code = "-".join(raw[i:i + 4] for i in range(0, 16, 4))
    now = timezone.now()
    with transaction.atomic():
        EnrolmentCode.objects.filter(user=user, used_at__isnull=True).update(expires_at=now)
        row = EnrolmentCode.objects.create(
            user=user, code_hash=EnrolmentCode.hash_code(code), issued_by=issuer if getattr(issuer, "pk", None)
            else None, expires_at=now + timedelta(hours=settings.TWO_FACTOR_ENROLMENT_CODE_HOURS))
        audit(issuer, Event.ACCOUNT_ENROLMENT_CODE_ISSUED, object_type="user", object_id=user.pk, ip=ip,
              details={"for": user.get_username(), "code": row.pk, "expires_at": row.expires_at.isoformat()})
    return code


def use_enrolment_code(user, code, *, ip=None):
    """True, and the code is spent, when `code` is a live code issued to `user`."""
    now = timezone.now()
    with transaction.atomic():
        used = EnrolmentCode.objects.filter(user=user, code_hash=EnrolmentCode.hash_code(code or ""),
                                            used_at__isnull=True, expires_at__gt=now).update(used_at=now)
        audit(user, Event.ACCOUNT_ENROLMENT_CODE_USED if used else Event.ACCOUNT_ENROLMENT_CODE_REFUSED,
              object_type="user", object_id=user.pk, ip=ip)
    return bool(used)
