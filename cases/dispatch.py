"""Delivering enforcement to the platform: HMAC-signed webhooks from the outbox, retried with backoff.

An Enforcement row is the record that the platform must act; it stays `pending` until the
platform's webhook answers 2xx. Each attempt is made by a job that re-reads the row, so a dead
endpoint, a dead worker or a flushed Redis delays a ban but never loses it: the sweep re-enqueues
rows whose next attempt is due. The platform may also pull pending rows and confirm them by API.
"""

import hashlib
import hmac
import json
import logging
import time
from datetime import timedelta

import requests
from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from cases.models import Enforcement, EnforcementStatus
from cases.statements import statement_for
from reviewconsole import outbound

log = logging.getLogger(__name__)
SIGNATURE_HEADER = "X-Review-Console-Signature"
DELIVERY_HEADER = "X-Review-Console-Delivery"


def sign(secret, timestamp, body):
    """`t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>">`: verifiable, and stale after a while."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(secret, header, body, tolerance=300, now=None):
    """What a platform runs on its side (also used by the tests)."""
    try:
        parts = dict(part.split("=", 1) for part in header.split(","))
        timestamp = int(parts["t"])
    except (ValueError, KeyError):
        return False
    if abs((now or time.time()) - timestamp) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), header)


def payload_of(enforcement):
    """The webhook body. A ban or removal carries its statement of reasons (DSA Art. 17), made here if the
    decision did not make it yet, for the platform to show the user (null for what restricts nothing)."""
    decision = enforcement.decision
    statement = statement_for(enforcement)
    return {
        "id": enforcement.pk,
        "action": enforcement.action,
        "target": enforcement.target,
        "reason": decision.reason.code,
        "decision": decision.pk,
        "case": decision.case_id,
        "expires_at": decision.ban_until.isoformat() if decision.ban_until else None,
        "decided_at": decision.created_at.isoformat(),
        **enforcement.payload,
        "statement_of_reasons": statement.as_json() if statement else None,
    }


def backoff(attempts):
    return timedelta(seconds=min(settings.DISPATCH_BACKOFF_SECONDS * 2 ** max(attempts - 1, 0), 3600))


def dispatch_enforcement(enforcement_id):
    """One delivery attempt. Returns delivered, retry, failed or skipped."""
    enforcement = Enforcement.objects.select_related("platform", "decision__reason").filter(pk=enforcement_id).first()
    now = timezone.now()
    if (enforcement is None or enforcement.status != EnforcementStatus.PENDING or enforcement.platform is None
            or not enforcement.platform.enabled or not enforcement.platform.webhook_url
            or (enforcement.next_attempt_at and enforcement.next_attempt_at > now)):
        return "skipped"
    # Claim this attempt: a second copy of the job (at-least-once delivery) finds the slot taken.
    claimed = Enforcement.objects.filter(
        pk=enforcement.pk, status=EnforcementStatus.PENDING, attempts=enforcement.attempts
    ).update(attempts=F("attempts") + 1, next_attempt_at=now + timedelta(seconds=settings.DISPATCH_TIMEOUT * 2))
    if not claimed:
        return "skipped"
    attempts = enforcement.attempts + 1
    body = json.dumps(payload_of(enforcement), sort_keys=True).encode()
    headers = {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: sign(enforcement.platform.signing_secret, int(time.time()), body),
        DELIVERY_HEADER: f"enforcement-{enforcement.pk}",  # stable across retries: the platform dedupes
    }
    # Through the SSRF guard: no internal addresses, the checked address is the one connected to,
    # each redirect checked again. Only the status or a short reason is kept, never the remote body:
    # last_error is shown to reviewers on the case page.
    try:
        with outbound.session() as session:
            response = session.post(enforcement.platform.webhook_url, data=body, headers=headers,
                                    timeout=settings.DISPATCH_TIMEOUT, stream=True)
            response.close()  # the body is never read
        error = None if 200 <= response.status_code < 300 else f"HTTP {response.status_code}"
    except requests.RequestException as exc:
        error = outbound.describe(exc)
    with transaction.atomic():
        if error is None:
            Enforcement.objects.filter(pk=enforcement.pk).update(
                status=EnforcementStatus.DELIVERED, dispatched_at=timezone.now(), last_error="",
                next_attempt_at=None)
            return "delivered"
        gave_up = attempts >= settings.DISPATCH_MAX_ATTEMPTS
        Enforcement.objects.filter(pk=enforcement.pk).update(
            last_error=error, next_attempt_at=None if gave_up else timezone.now() + backoff(attempts),
            status=EnforcementStatus.FAILED if gave_up else EnforcementStatus.PENDING)
    log.warning("enforcement %s attempt %s failed: %s", enforcement.pk, attempts, error)
    return "failed" if gave_up else "retry"


def due_enforcements(now=None):
    """Pending pushes whose next attempt is due (or never made)."""
    now = now or timezone.now()
    return Enforcement.objects.filter(
        Q(next_attempt_at__lte=now) | Q(next_attempt_at__isnull=True),
        status=EnforcementStatus.PENDING, platform__enabled=True, platform__webhook_url__gt="",
    )
