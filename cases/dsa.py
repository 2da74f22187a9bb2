"""Submitting statements of reasons to the Commission's DSA Transparency Database (DSA Art. 24(5)).

Each StatementOfReasons is an outbox row (`dsa_status`): `pending` until the database answers
`201 Created` for it, then `submitted` with the Commission's uuid. `statements_job` (cron, every 5
minutes) makes any statement still missing and, only while DSA_TDB_TOKEN is set, `submit_statements`
sends the due ones in batches of at most 100 (`POST {DSA_TDB_URL}/statements`, `{"statements": [...]}`,
Bearer token), and:

* 201: every statement in the batch is submitted.
* 422 with errors per statement (`statement_<n>`: field -> messages): the database created none of
  the batch; those statements are `failed` with the message (they need a person: a policy text too
  long, a missing legal ground), the others are sent again at once without them.
* 422 naming `existing_puids`: those were submitted before (a run cut short after the database took
  them): they are `submitted`; the others are sent again. The puid is the idempotency key.
* 401/403 (token), 429, other 4xx, 5xx or no connection: the batch waits and is retried with backoff
  (doubling from DSA_TDB_BACKOFF_SECONDS up to six hours); the run stops, so an outage is not hammered.

A statement whose decision was undone (or whose enforcement was all cancelled) is `withdrawn`, never
sent; nothing is sent before the undo window closes. The URL goes through the outbound guard like every
other call the console makes. No personal data is sent: the facts are the policy's words, the targets
are not named, the puid is our random identifier.
"""

import json
import logging
import time
from datetime import UTC, date, timedelta

import requests
from django.conf import settings
from django.db import transaction
from django.db.models import Exists, F, OuterRef, Q
from django.utils import timezone

from cases.models import (
    Decision,
    DsaStatus,
    Enforcement,
    EnforcementStatus,
    Ground,
    PolicyCategory,
    Restriction,
    Source,
    StatementOfReasons,
)
from cases.statements import create_missing_statements
from reviewconsole import outbound
from reviewconsole.audit.events import Event
from reviewconsole.audit.recorder import audit

log = logging.getLogger(__name__)
MAX_BATCH = 100  # the multiple endpoint takes 1 to 100 statements a call
MAX_BACKOFF = timedelta(hours=6)
JOB_SECONDS = 240  # a run stops starting batches after this; the next run goes on

# The database's categories and keywords (API v2 schema, from 1 July 2025) for each policy category.
PROTECTION_OF_MINORS = "STATEMENT_CATEGORY_PROTECTION_OF_MINORS"
OTHER_VIOLATION_TC = "STATEMENT_CATEGORY_OTHER_VIOLATION_TC"
CSAM = "KEYWORD_CHILD_SEXUAL_ABUSE_MATERIAL"
GROOMING = "KEYWORD_GROOMING_SEXUAL_ENTICEMENT_MINORS"
CATEGORIES = {
    PolicyCategory.KNOWN_CSAM: (PROTECTION_OF_MINORS, [CSAM]),
    PolicyCategory.NEW_CSAM: (PROTECTION_OF_MINORS, [CSAM]),
    PolicyCategory.SEXUALISED_MINOR: (PROTECTION_OF_MINORS, [CSAM]),
    PolicyCategory.DISTRIBUTION_GROUP: (PROTECTION_OF_MINORS, [CSAM]),
    PolicyCategory.MINOR_VICTIM: (PROTECTION_OF_MINORS, [CSAM]),
    PolicyCategory.GROOMING: (PROTECTION_OF_MINORS, [GROOMING]),
    PolicyCategory.SEXTORTION: (PROTECTION_OF_MINORS, [GROOMING]),
    PolicyCategory.ADULT_NUDITY: (OTHER_VIOLATION_TC, ["KEYWORD_NUDITY"]),
    PolicyCategory.OTHER_VIOLATION: (OTHER_VIOLATION_TC, []),
}
CONTENT_TYPES = {"image": "CONTENT_TYPE_IMAGE", "video": "CONTENT_TYPE_VIDEO", "text": "CONTENT_TYPE_TEXT"}
OTHER_CONTENT = {"account": "Account", "group": "Group (group chat or community)", "other": "Other"}


def submission(statement):
    """The statement as the Transparency Database takes it (field names and values of its API)."""
    category, keywords = CATEGORIES.get(statement.category, (OTHER_VIOLATION_TC, []))
    applied = statement.decided_at.astimezone(UTC).date()
    body = {
        "puid": statement.puid,
        "decision_ground": ("DECISION_GROUND_ILLEGAL_CONTENT" if statement.ground == Ground.ILLEGAL_CONTENT
                            else "DECISION_GROUND_INCOMPATIBLE_CONTENT"),
        "category": category,
        "territorial_scope": list(settings.DSA_TERRITORIAL_SCOPE),
        "content_date": _day(max(statement.content_date.astimezone(UTC).date(), date(2000, 1, 1))),
        "application_date": _day(max(applied, date(2020, 1, 1))),
        "decision_facts": statement.facts[:5000],
        "source_type": "SOURCE_ARTICLE_16" if statement.source == Source.NOTICE else "SOURCE_VOLUNTARY",
        "automated_detection": "Yes" if statement.automated_detection else "No",
        "automated_decision": ("AUTOMATED_DECISION_FULLY" if statement.automated_decision
                               else "AUTOMATED_DECISION_NOT_AUTOMATED"),
    }
    if keywords:
        body["category_specification"] = keywords
    if statement.content_type in CONTENT_TYPES:
        body["content_type"] = [CONTENT_TYPES[statement.content_type]]
    else:
        body["content_type"] = ["CONTENT_TYPE_OTHER"]
        body["content_type_other"] = OTHER_CONTENT.get(statement.content_type, "Other")
    until = _day(max(statement.until.astimezone(UTC).date(), applied)) if statement.until else None
    if statement.restriction == Restriction.CONTENT_REMOVED:
        body["decision_visibility"] = ["DECISION_VISIBILITY_CONTENT_REMOVED"]
    elif statement.restriction in (Restriction.ACCOUNT_SUSPENDED, Restriction.ACCOUNT_TERMINATED):
        body["decision_account"] = ("DECISION_ACCOUNT_SUSPENDED" if until else "DECISION_ACCOUNT_TERMINATED")
        if until:
            body["end_date_account_restriction"] = until
    else:
        # A group is a part of the service its owner was given: its provision is suspended or ended.
        body["decision_provision"] = ("DECISION_PROVISION_PARTIAL_SUSPENSION" if until
                                      else "DECISION_PROVISION_PARTIAL_TERMINATION")
        if until:
            body["end_date_service_restriction"] = until
    if statement.ground == Ground.ILLEGAL_CONTENT:
        body["illegal_content_legal_ground"] = statement.legal_ground[:500]
        body["illegal_content_explanation"] = statement.facts[:2000]
    else:
        body["incompatible_content_ground"] = (statement.terms_ground or "Terms of service")[:500]
        body["incompatible_content_explanation"] = statement.facts[:2000]
    return body


def _day(day):
    return day.strftime("%Y-%m-%d")


def backoff(attempts):
    return min(timedelta(seconds=settings.DSA_TDB_BACKOFF_SECONDS * 2 ** max(attempts - 1, 0)), MAX_BACKOFF)


def withdraw_undone():
    """Pending statements whose restriction never happened: the decision was undone, or every enforcement
    row of the target was cancelled. Returns how many."""
    live = Enforcement.objects.filter(decision=OuterRef("decision"), action=OuterRef("action"),
                                      target=OuterRef("target")).exclude(status=EnforcementStatus.CANCELLED)
    undone = Decision.objects.filter(pk=OuterRef("decision"), undone_at__isnull=False)
    return StatementOfReasons.objects.filter(dsa_status=DsaStatus.PENDING).filter(
        Exists(undone) | ~Exists(live)).update(dsa_status=DsaStatus.WITHDRAWN, dsa_next_attempt_at=None)


def due(now=None):
    """Pending statements whose (next) attempt is due and whose decision is past the undo window."""
    now = now or timezone.now()
    return StatementOfReasons.objects.filter(
        Q(dsa_next_attempt_at__lte=now) | Q(dsa_next_attempt_at__isnull=True),
        dsa_status=DsaStatus.PENDING, decided_at__lte=now - timedelta(seconds=settings.UNDO_SECONDS),
    ).order_by("pk")


def statements_job():
    """The cron job: statements for any restriction still lacking one, then, once onboarded (a token is
    set), their submission to the Transparency Database."""
    made = create_missing_statements()
    counts = submit_statements(make=False) if settings.DSA_TDB_TOKEN else {}
    return {**counts, "made": made}


def submit_statements(batch=None, seconds=JOB_SECONDS, *, make=True):
    """Make missing statements, then submit the due ones. Returns counts by outcome."""
    counts = {"submitted": 0, "already": 0, "failed": 0, "retry": 0, "withdrawn": 0, "made": 0}
    if not settings.DSA_TDB_TOKEN:
        return counts  # not onboarded: nothing leaves the console
    if make:
        counts["made"] = create_missing_statements()
    counts["withdrawn"] = withdraw_undone()
    size = min(batch or settings.DSA_TDB_BATCH, MAX_BATCH)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        claimed = _claim(size)
        if not claimed:
            break
        outcome = _send(claimed)
        for key, value in outcome.items():
            counts[key] += value
        if outcome["retry"]:
            break  # the database is down or refuses the token: the next run tries again, after the backoff
    return counts


def _claim(size):
    """Take up to `size` due statements for this run: their next attempt moves past the call's timeout, so
    a second run finds them taken. A statement sent twice anyway is answered as a duplicate puid."""
    now = timezone.now()
    ids = list(due(now).values_list("pk", flat=True)[:size])
    if not ids:
        return []
    lease = now + timedelta(seconds=settings.DSA_TDB_TIMEOUT * 2)
    StatementOfReasons.objects.filter(
        Q(dsa_next_attempt_at__lte=now) | Q(dsa_next_attempt_at__isnull=True),
        pk__in=ids, dsa_status=DsaStatus.PENDING,
    ).update(dsa_next_attempt_at=lease, dsa_attempts=F("dsa_attempts") + 1)
    return list(StatementOfReasons.objects.filter(pk__in=ids, dsa_status=DsaStatus.PENDING,
                                                  dsa_next_attempt_at=lease).order_by("pk"))


def _send(statements):
    outcome = {"submitted": 0, "already": 0, "failed": 0, "retry": 0, "withdrawn": 0, "made": 0}
    url = settings.DSA_TDB_URL.rstrip("/") + "/statements"
    headers = {"Authorization": f"Bearer {settings.DSA_TDB_TOKEN}", "Accept": "application/json",
               "Content-Type": "application/json"}
    body = json.dumps({"statements": [submission(s) for s in statements]}).encode()
    try:
        with outbound.session() as session:
            response = session.post(url, data=body, headers=headers, timeout=settings.DSA_TDB_TIMEOUT)
            status, answer = response.status_code, _json(response)
    except requests.RequestException as exc:
        return _later(statements, outbound.describe(exc), outcome)
    if status == 201:
        created = {row.get("puid"): row for row in answer.get("statements", []) if isinstance(row, dict)}
        _submitted(statements, created)
        outcome["submitted"] = len(statements)
        return outcome
    errors = answer.get("errors") if isinstance(answer, dict) else None
    if status == 422 and isinstance(errors, dict):
        existing = set(errors.get("existing_puids") or [])
        refused = {int(key.removeprefix("statement_")): value for key, value in errors.items()
                   if key.startswith("statement_") and key.removeprefix("statement_").isdigit()}
        if existing or refused:
            return _partly(statements, existing, refused, outcome)
    return _later(statements, f"HTTP {status}" + (f": {_message(answer)}" if _message(answer) else ""), outcome)


def _json(response):
    try:
        return response.json()
    except ValueError:
        return {}


def _message(answer):
    message = answer.get("message") if isinstance(answer, dict) else None
    return str(message)[:200] if message else ""


def _submitted(statements, created):
    now = timezone.now()
    with transaction.atomic():
        for statement in statements:
            row = created.get(statement.puid) or {}
            StatementOfReasons.objects.filter(pk=statement.pk).update(
                dsa_status=DsaStatus.SUBMITTED, dsa_submitted_at=now, dsa_next_attempt_at=None, dsa_last_error="",
                dsa_uuid=str(row.get("uuid") or row.get("id") or "")[:64])
        audit(None, Event.DSA_STATEMENTS_SUBMITTED, object_type="statement_of_reasons",
              details={"statements": [s.pk for s in statements]})


def _partly(statements, existing, refused, outcome):
    """A 422 that names statements: those already in the database are submitted, those refused need a
    person; the database created none of the batch, so the rest go again at once."""
    done = [s for s in statements if s.puid in existing]
    if done:
        _submitted(done, {})
        outcome["already"] += len(done)
    with transaction.atomic():
        for index, statement in enumerate(statements):
            if statement.puid in existing:
                continue
            if index in refused:
                error = _field_errors(refused[index])
                StatementOfReasons.objects.filter(pk=statement.pk).update(
                    dsa_status=DsaStatus.FAILED, dsa_last_error=error, dsa_next_attempt_at=None)
                audit(None, Event.DSA_STATEMENT_REFUSED, case=statement.case, object_type="statement_of_reasons",
                      object_id=statement.pk, details={"error": error})
                log.error("DSA Transparency Database refused statement %s: %s", statement.pk, error)
                outcome["failed"] += 1
            else:
                # Not this statement's fault: it goes with the next batch, the attempt not counted.
                StatementOfReasons.objects.filter(pk=statement.pk).update(
                    dsa_next_attempt_at=None, dsa_attempts=F("dsa_attempts") - 1)
    return outcome


def _field_errors(fields):
    """`field: message` pairs of the database's answer for one statement (its own words, for a person)."""
    if not isinstance(fields, dict):
        return str(fields)[:2000]
    parts = []
    for field, messages in fields.items():
        said = messages if isinstance(messages, list) else [messages]
        parts.append(f"{field}: {' '.join(map(str, said))}")
    return "; ".join(parts)[:2000]


def _later(statements, error, outcome):
    now = timezone.now()
    for statement in statements:
        # The claim counted this attempt already.
        StatementOfReasons.objects.filter(pk=statement.pk, dsa_status=DsaStatus.PENDING).update(
            dsa_last_error=error[:2000], dsa_next_attempt_at=now + backoff(statement.dsa_attempts))
    log.warning("DSA Transparency Database: %s statements wait (%s)", len(statements), error)
    outcome["retry"] += len(statements)
    return outcome


def resubmit(user, statement_ids, *, ip=None):
    """Send refused statements again (after the policy text or a setting was fixed). Returns how many."""
    with transaction.atomic():
        ids = list(StatementOfReasons.objects.select_for_update().filter(
            pk__in=list(statement_ids), dsa_status=DsaStatus.FAILED).values_list("pk", flat=True))
        StatementOfReasons.objects.filter(pk__in=ids).update(
            dsa_status=DsaStatus.PENDING, dsa_next_attempt_at=None, dsa_last_error="", dsa_attempts=0)
        if ids:
            audit(user, Event.DSA_STATEMENTS_RESUBMITTED, object_type="statement_of_reasons",
                  details={"statements": ids}, ip=ip)
    return len(ids)

