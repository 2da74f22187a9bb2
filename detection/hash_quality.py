"""The hash-quality loop: what became of each bank entry's matches, entries taken out of automation
(deconfirmed by a senior, quarantined by the circuit breaker) and put back, and the outcomes sent
back to the exchange an entry came from (NCMEC's feedback API, or a CSV for the others)."""

import csv
import logging
import re
from collections import Counter, defaultdict
from functools import reduce
from operator import or_

import requests
from django.conf import settings
from django.db import transaction
from django.db.models import Case, Count, F, IntegerField, Q, Value, When
from django.utils import timezone

from detection.banks import spreadsheet_safe
from detection.models import Bank, BankHash, BankHashOutcome, EntryOutcome, EntryStatus, HashType, SignalKind
from reviewconsole.audit.events import Event
from reviewconsole.audit.recorder import audit

log = logging.getLogger(__name__)

CHUNK = 5000  # ids a statement: well under SQLite's bound-parameter limit
REASON_CHARS = 255
# Which running count each outcome moves; an overturn is kept as a row only (what it undid stays counted).
COUNTERS = {EntryOutcome.CONFIRMED: "confirm_count", EntryOutcome.DISMISSED: "dismiss_count",
            EntryOutcome.AUTO_ACTIONED: "auto_action_count"}
# A flag is the status_reason of an active entry written in this form ("dismissed 4 of 5 times"):
# other writers leave notes on active entries too (the breaker's "breaker resumed: ..."), and
# those are not flags.
FLAG_PREFIX = "dismissed "


class EntryError(ValueError):
    """The change cannot be made; the message says why, in words for the page."""


# Which entries a signal rests on ---------------------------------------------------------------

def _is_match(signal):
    return getattr(signal, "kind", None) == SignalKind.HASH_MATCH and isinstance(getattr(signal, "details", None), dict)


def _entry_ids(details):
    """The bank entries named in one hash-match signal's details (see detection.match_signals):
    the strongest entry, each agreeing hash's entry, and every matched frame of a video (both the
    bank video's frames and known still images found among the frames)."""
    found = set()

    def take(value):
        if isinstance(value, int) and not isinstance(value, bool):
            found.add(value)

    def take_all(rows):
        if isinstance(rows, list):
            for row in rows:
                if isinstance(row, dict):
                    take(row.get("entry_id"))

    take(details.get("entry_id"))
    take_all(details.get("hashes"))
    video = details.get("video")
    if isinstance(video, dict):
        take_all(video.get("frames"))
        take_all(video.get("image_frames"))
    return found


def entries_of_signals(signals):
    """The ids of the bank entries a set of signals rests on (other kinds of signal rest on none)."""
    found = set()
    for signal in signals:
        if _is_match(signal):
            found |= _entry_ids(signal.details)
    return found


def _chunks(ids):
    ids = sorted(ids)
    for start in range(0, len(ids), CHUNK):
        yield ids[start:start + CHUNK]


# Matches and outcomes --------------------------------------------------------------------------

def count_matches(signals):
    """Count one match for each entry of each newly triaged hash-match signal; returns the number
    of entries counted. Call it once per signal (triage does, for the signals it has just claimed):
    it adds, it does not check whether a signal was counted before.
    """
    per_entry = Counter()
    for signal in signals:
        if _is_match(signal):
            per_entry.update(_entry_ids(signal.details))
    if not per_entry:
        return 0
    now = timezone.now()
    with transaction.atomic():
        for chunk in _chunks(per_entry):
            by_step = defaultdict(list)
            for pk in chunk:
                if per_entry[pk] > 1:
                    by_step[per_entry[pk]].append(pk)
            # One statement for the whole chunk, entries matched more than once adding more: the rows
            # are then locked in one pass, and two triage jobs sharing entries cannot deadlock.
            step = Case(*[When(pk__in=pks, then=Value(n)) for n, pks in sorted(by_step.items())],
                        default=Value(1), output_field=IntegerField()) if by_step else Value(1)
            BankHash.objects.filter(pk__in=chunk).update(match_count=F("match_count") + step, last_matched_at=now)
    return len(per_entry)


def record_outcome(signals, outcome, *, decision_id=None):
    """Record what a decision meant for the entries its hash-match signals rest on: one outcome row
    per entry, its counter moved, its flag re-judged. Returns the ids of the entries recorded.

    Idempotent: an entry that already has this outcome for this decision gets no second row (with
    no decision, the same outcome for the same item counts as the same one). Entries deleted
    meanwhile are skipped.
    """
    return record_outcomes(outcome, [(signals, decision_id)]).get(decision_id, [])


def record_outcomes(outcome, wanted):
    """record_outcome for many decisions at once: `wanted` is [(signals, decision_id)]. The rows are
    read, written and counted with a statement of each kind per chunk of entries, whatever the
    number of decisions. Returns {decision_id: [ids of the entries recorded for it]}."""
    outcome = EntryOutcome(outcome)
    item_of = {}  # (decision_id, entry id) -> the item of the first signal naming the entry
    for signals, decision_id in wanted:
        for signal in signals:
            if _is_match(signal):
                for pk in sorted(_entry_ids(signal.details)):
                    item_of.setdefault((decision_id, pk), signal.item_id)
    if not item_of:
        return {}
    by_entry = defaultdict(list)
    for decision_id, pk in item_of:
        by_entry[pk].append(decision_id)
    fresh, moved = defaultdict(list), []
    with transaction.atomic():
        for chunk in _chunks(by_entry):
            # Locked in id order: two decisions resting on one entry wait for each other instead of
            # both finding no outcome and both recording one.
            present = list(BankHash.objects.select_for_update().filter(pk__in=chunk).order_by("pk")
                           .values_list("pk", flat=True))
            decisions = {d for pk in present for d in by_entry[pk]}
            named = [d for d in decisions if d is not None]
            which = Q(decision_id__in=named) if named else Q(pk__in=[])
            if None in decisions:
                which |= Q(decision_id__isnull=True)
            seen = set(BankHashOutcome.objects.filter(which, bank_hash_id__in=present, outcome=outcome)
                       .values_list("decision_id", "bank_hash_id", "item_id"))
            seen_entry = {(d, pk) for d, pk, _ in seen}
            rows, counted = [], Counter()
            for pk in present:
                for decision_id in by_entry[pk]:
                    item_id = item_of[(decision_id, pk)]
                    if (decision_id, pk, item_id) in seen if decision_id is None else (decision_id, pk) in seen_entry:
                        continue
                    rows.append(BankHashOutcome(bank_hash_id=pk, outcome=outcome, decision_id=decision_id,
                                                item_id=item_id))
                    fresh[decision_id].append(pk)
                    counted[pk] += 1
            BankHashOutcome.objects.bulk_create(rows)
            field = COUNTERS.get(outcome)
            if field and counted:
                by_step = defaultdict(list)
                for pk, n in counted.items():
                    by_step[n].append(pk)
                step = Case(*[When(pk__in=pks, then=Value(n)) for n, pks in sorted(by_step.items()) if n > 1],
                            default=Value(1), output_field=IntegerField()) if len(by_step) > 1 or 1 not in by_step \
                    else Value(1)
                BankHash.objects.filter(pk__in=list(counted)).update(**{field: F(field) + step})
            moved += list(counted)
        if outcome in COUNTERS:
            for chunk in _chunks(set(moved)):
                _judge_flags(chunk)
    return dict(fresh)


def forget_outcomes(decision_id):
    """Take back what a decision recorded (it was undone within its window: it never stood), so that
    an entry's record counts only decisions that stand. Returns the number of outcomes removed."""
    with transaction.atomic():
        rows = list(BankHashOutcome.objects.select_for_update().filter(decision_id=decision_id, sent_at__isnull=True))
        for row in rows:
            field = COUNTERS.get(row.outcome)
            if field:
                BankHash.objects.filter(pk=row.bank_hash_id, **{f"{field}__gt": 0}).update(**{field: F(field) - 1})
        BankHashOutcome.objects.filter(pk__in=[row.pk for row in rows]).delete()
        for chunk in _chunks({row.bank_hash_id for row in rows}):
            _judge_flags(chunk)
    return len(rows)


def flag_thresholds():
    return settings.BANK_ENTRY_FLAG_DISMISSALS, settings.BANK_ENTRY_FLAG_SHARE


def flagged_q():
    """Active entries whose reviewers keep dismissing their matches."""
    return Q(status=EntryStatus.ACTIVE, status_reason__startswith=FLAG_PREFIX)


def is_flagged(entry):
    return entry.status == EntryStatus.ACTIVE and entry.status_reason.startswith(FLAG_PREFIX)


def _judge_flags(entry_ids):
    """Flag an active entry dismissed again and again, or lift the flag once confirmations outweigh.

    After a senior reconfirmed an entry (or the breaker let it go), only the outcomes since then
    count: the senior looked at it, and the earlier dismissals are what they answered.
    """
    least, share = flag_thresholds()
    rows = list(BankHash.objects.filter(pk__in=entry_ids, status=EntryStatus.ACTIVE).values_list(
        "pk", "status_reason", "status_changed_at", "confirm_count", "dismiss_count", "auto_action_count"))
    since = {pk: changed for pk, _, changed, *_ in rows if changed}
    recent = defaultdict(Counter)
    if since:
        window = reduce(or_, (Q(bank_hash_id=pk, created_at__gt=changed) for pk, changed in since.items()))
        for pk, outcome, n in (BankHashOutcome.objects.filter(window, outcome__in=list(COUNTERS))
                               .values_list("bank_hash_id", "outcome").annotate(n=Count("id")).order_by()):
            recent[pk][outcome] = n
    for pk, reason, changed, *record in rows:
        confirmed, dismissed, automatic = (
            (recent[pk][o] for o in (EntryOutcome.CONFIRMED, EntryOutcome.DISMISSED, EntryOutcome.AUTO_ACTIONED))
            if pk in since else record)
        total = confirmed + dismissed + automatic
        flag = ""
        if dismissed >= least and total and dismissed / total >= share:
            flag = f"{FLAG_PREFIX}{dismissed} of {total} times"
            if pk in since:
                flag += f" since {timezone.localtime(changed):%Y-%m-%d}"
        if flag and reason != flag:
            BankHash.objects.filter(pk=pk, status=EntryStatus.ACTIVE).update(status_reason=flag)
        elif not flag and reason.startswith(FLAG_PREFIX):
            BankHash.objects.filter(pk=pk, status=EntryStatus.ACTIVE).update(status_reason="")


# Taking entries out of automation and putting them back ----------------------------------------

def entries_that_act(entry_ids):
    """Of these entries, the ids that may act on their own (neither deconfirmed nor quarantined)."""
    acting = set()
    for chunk in _chunks(set(entry_ids)):
        acting.update(BankHash.objects.filter(pk__in=chunk, status=EntryStatus.ACTIVE).values_list("pk", flat=True))
    return acting


def entry_standing(entry_ids):
    """{entry id: (status, reason)} for the entries that are deconfirmed, quarantined or flagged, so
    that a reviewer sees what became of the entry a match rests on."""
    standing = {}
    for chunk in _chunks(set(entry_ids)):
        rows = BankHash.objects.filter(Q(pk__in=chunk) & (~Q(status=EntryStatus.ACTIVE) | flagged_q()))
        standing.update({pk: ("flagged" if status == EntryStatus.ACTIVE else status, reason)
                         for pk, status, reason in rows.values_list("pk", "status", "status_reason")})
    return standing


def _reason(reason):
    reason = " ".join(str(reason or "").split())
    if len(reason) < 5:
        raise EntryError("Say why, in a few words: the reason is kept with the entry and in the audit log.")
    return reason[:REASON_CHARS]


def _for_update(entry_id):
    # The entry's row only: its bank is read for the audit row, not locked against the bank's own edits.
    return BankHash.objects.select_for_update(of=("self",)).select_related("bank").filter(pk=entry_id).first()


def _locked(entry_id):
    entry = _for_update(entry_id)
    if entry is None:
        raise EntryError(f"There is no bank entry #{entry_id}.")
    return entry


def _record(entry):
    return {"match_count": entry.match_count, "confirm_count": entry.confirm_count,
            "dismiss_count": entry.dismiss_count, "auto_action_count": entry.auto_action_count}


def _set_status(entry, status, reason):
    before = {"status": entry.status, "reason": entry.status_reason}
    entry.status, entry.status_reason, entry.status_changed_at = status, reason, timezone.now()
    entry.save(update_fields=["status", "status_reason", "status_changed_at"])
    return before


def _details(entry, before, **more):
    return {"name": entry.bank.name, "entry": entry.pk, "type": entry.hash_type, "value": entry.value,
            "label": entry.label, "before": before, "record": _record(entry), **more}


def deconfirm_entry(user, entry_id, reason, *, ip=None):
    """Take an entry out of automation: its matches are still recorded and shown to reviewers, but no
    rule acts on it. Returns the entry; deconfirming a deconfirmed entry changes nothing."""
    reason = _reason(reason)
    with transaction.atomic():
        entry = _locked(entry_id)
        if entry.status == EntryStatus.DECONFIRMED:
            return entry
        before = _set_status(entry, EntryStatus.DECONFIRMED, reason)
        audit(user, Event.BANK_ENTRY_DECONFIRMED, object_type="bank", object_id=entry.bank_id, ip=ip,
              details=_details(entry, before, reason=reason))
    return entry


def reconfirm_entry(user, entry_id, reason, *, ip=None):
    """Put a deconfirmed or quarantined entry back into automation, or clear an active entry's flag
    (its dismissals are then counted afresh). Returns the entry; an active entry without a note
    is left as it is."""
    reason = _reason(reason)
    with transaction.atomic():
        entry = _locked(entry_id)
        if entry.status == EntryStatus.ACTIVE and not entry.status_reason:
            return entry
        before = _set_status(entry, EntryStatus.ACTIVE, "")
        audit(user, Event.BANK_ENTRY_RECONFIRMED, object_type="bank", object_id=entry.bank_id, ip=ip,
              details=_details(entry, before, reason=reason))
    return entry


def quarantine_entry(entry_id, reason, counts):
    """The circuit breaker's hold on an entry that fired abnormally: its matches go to people until
    a senior reconfirms it (or the breaker is resumed). Returns the entry, or None when it is gone.

    Only an active entry is quarantined: a deconfirmed one acts on nothing already, and quarantining
    twice changes nothing.
    """
    reason = " ".join(str(reason or "").split())[:REASON_CHARS] or "tripped the circuit breaker"
    with transaction.atomic():
        entry = _for_update(entry_id)
        if entry is None or entry.status != EntryStatus.ACTIVE:
            return entry
        before = _set_status(entry, EntryStatus.QUARANTINED, reason)
        audit(None, Event.BANK_ENTRY_QUARANTINED, object_type="bank", object_id=entry.bank_id,
              details=_details(entry, before, reason=reason, counts=dict(counts or {})))
    return entry


# Feedback to the exchanges ---------------------------------------------------------------------

# What a person's judgement of a match tells the exchange. A rule's action judges nothing, and an
# overturn says the action was wrong, not the entry: those stay in the CSV export only.
SENTIMENT = {EntryOutcome.CONFIRMED: "affirmative", EntryOutcome.DISMISSED: "negative"}
# NCMEC takes feedback per fingerprint type; it has no SHA-256 type (threatexchange's FingerprintType).
FINGERPRINTS = {HashType.MD5: "md5", HashType.PDQ: "pdq"}
# As detection.exchange labels the entries it fetches: "ncmec:<member>-<entry id>", space-separated
# when several NCMEC entries share one hash.
NCMEC_LABEL = "ncmec:"
NCMEC_REFERENCE = re.compile(r"^ncmec:(\d+)-(\S+)$")


class FeedbackError(Exception):
    """Feedback cannot be sent as configured; the message says what to set."""


def _references(label):
    return [(int(m.group(1)), m.group(2)) for m in map(NCMEC_REFERENCE.match, label.split()) if m]


def pending_feedback(bank):
    """Outcomes of a bank's entries that NCMEC's feedback API takes and that were not sent yet."""
    return BankHashOutcome.objects.filter(
        bank_hash__bank=bank, sent_at__isnull=True, outcome__in=list(SENTIMENT),
        bank_hash__hash_type__in=list(FINGERPRINTS), bank_hash__label__startswith=NCMEC_LABEL)


def _sends_feedback(bank):
    exchange = getattr(bank, "exchange", None)
    return exchange is not None and exchange.api == "ncmec"


def feedback_summary(bank):
    """What the bank page says about its outcomes: recorded, waiting to be sent, failing, the newest error."""
    outcomes = BankHashOutcome.objects.filter(bank_hash__bank=bank)
    summary = outcomes.aggregate(recorded=Count("id"), sent=Count("id", filter=Q(sent_at__isnull=False)))
    summary["api"] = _sends_feedback(bank)
    summary["waiting"] = summary["failing"] = 0
    summary["error"] = ""
    if summary["api"] and summary["recorded"] > summary["sent"]:
        pending = pending_feedback(bank)
        summary.update(pending.aggregate(waiting=Count("id"), failing=Count("id", filter=~Q(send_error=""))))
        if summary["failing"]:
            summary["error"] = pending.exclude(send_error="").order_by("-pk").values_list(
                "send_error", flat=True).first()
    return summary


def _negative_reason(client, fingerprint, cache):
    """The id of the negative-feedback reason to give for this fingerprint type (NCMEC requires one):
    the one named by NCMEC_FEEDBACK_REASON (by name or id), or the only one offered."""
    if fingerprint not in cache:
        try:
            options = client.feedback_reasons(fingerprint)
            wanted = settings.NCMEC_FEEDBACK_REASON.strip().lower()
            chosen = [guid for guid, name in options.items() if wanted in (guid.lower(), name.strip().lower())]
            if not wanted and len(options) == 1:
                chosen = list(options)
            if not chosen:
                names = ", ".join(sorted(options.values())) or "none offered"
                raise FeedbackError(f"set NCMEC_FEEDBACK_REASON to one of NCMEC's reasons for negative "
                                    f"{fingerprint.value} feedback: {names}")
            cache[fingerprint] = chosen[0]
        except Exception as exc:  # remembered, so that one run asks NCMEC once per type
            cache[fingerprint] = exc
    if isinstance(cache[fingerprint], Exception):
        raise cache[fingerprint]
    return cache[fingerprint]


def _failure(exc, describe):
    """(short reason, whether the whole run should stop) for a failed send."""
    if isinstance(exc, FeedbackError):
        return str(exc), False
    response = getattr(exc, "response", None) if isinstance(exc, requests.HTTPError) else None
    if response is not None and response.status_code in (400, 404, 409, 410, 422):
        # About this entry only (NCMEC no longer has it, or will not take this feedback on it).
        return f"NCMEC refused the feedback on this entry (HTTP {response.status_code})", False
    return describe(exc), True


def send_feedback(bank_id, *, client=None):
    """Send the bank's unsent outcomes to NCMEC's feedback API, one entry at a time (a job).

    Each entry gets the sentiment of its newest unsent outcome (NCMEC keeps one feedback per member
    per entry and fingerprint, and a PUT replaces it, so sending again is harmless). Sent outcomes
    are marked sent at once; a failed one keeps sent_at empty and records why, and goes again in the
    next run. An error about the connection or the credentials ends the run; one about a single
    entry skips that entry. Returns the counts.
    """
    bank = Bank.objects.select_related("exchange").filter(pk=bank_id).first()
    if bank is None or not _sends_feedback(bank):
        return {"skipped": "the bank has no exchange that takes feedback"}
    # Outcomes never tried before those that failed: an entry NCMEC keeps refusing must not hold up the rest.
    untried_first = Case(When(send_error="", then=Value(0)), default=Value(1), output_field=IntegerField())
    rows = list(pending_feedback(bank).order_by(untried_first, "pk").values_list(
        "pk", "bank_hash_id", "outcome", "bank_hash__hash_type", "bank_hash__label")[:settings.BANK_FEEDBACK_BATCH])
    if not rows:
        return {"bank": bank.name, "sent": 0}
    # threatexchange takes a few hundred milliseconds to load: only when there is something to send.
    from threatexchange.exchanges.clients.ncmec.hash_api import FeedbackType, FingerprintType  # noqa: PLC0415

    from detection import exchange  # noqa: PLC0415

    by_entry = defaultdict(list)
    for row in rows:
        by_entry[row[1]].append(row)
    counts, errors, reasons = Counter(), [], {}
    try:
        client = client or exchange.default_client()
    except exchange.ExchangeError as exc:
        BankHashOutcome.objects.filter(pk__in=[row[0] for row in rows]).update(send_error=str(exc)[:REASON_CHARS])
        return {"bank": bank.name, "sent": 0, "error": str(exc)}
    for entry_id, entry_rows in by_entry.items():
        newest, _, outcome, hash_type, label = max(entry_rows)
        sentiment = SENTIMENT[outcome]
        fingerprint = FingerprintType[FINGERPRINTS[hash_type]]
        pks = [row[0] for row in entry_rows]
        try:
            references = _references(label)
            if not references:
                raise FeedbackError(f"no NCMEC entry named in the label {label[:80]!r}")
            for member, reference in references:
                if sentiment == "affirmative":
                    client.submit_feedback(member, reference, fingerprint, FeedbackType.upvote)
                else:
                    client.submit_feedback(member, reference, fingerprint, FeedbackType.downvote,
                                           negative_reason_guid=_negative_reason(client, fingerprint, reasons))
        except Exception as exc:  # whatever went wrong is recorded on the outcomes, and the next run retries
            message, stop = _failure(exc, exchange.describe_failure)
            BankHashOutcome.objects.filter(pk__in=pks).update(send_error=message[:REASON_CHARS])
            log.warning("feedback on entry %s of bank %s not sent: %s", entry_id, bank.name, message)
            counts["failed"] += len(pks)
            errors.append(message)
            if stop:
                break
            continue
        # Older unsent outcomes of the entry, even outside this batch, are superseded by the newest
        # judgement NCMEC now holds: sent later, they would overwrite it.
        sent = pending_feedback(bank).filter(bank_hash_id=entry_id, pk__lte=newest).update(
            sent_at=timezone.now(), send_error="")
        counts["sent"] += sent
        counts["entries"] += 1
        counts[sentiment] += 1
    result = {"bank": bank.name, "sent": counts["sent"], "entries": counts["entries"],
              "affirmative": counts["affirmative"], "negative": counts["negative"], "failed": counts["failed"]}
    if errors:
        result["error"] = errors[0]
    if counts["sent"] or counts["failed"]:
        with transaction.atomic():
            audit(None, Event.BANK_FEEDBACK_SENT, object_type="bank", object_id=bank.pk,
                  details={**result, "api": bank.exchange.api})
    return result


def send_pending_feedback():
    """The periodic run: every bank whose exchange takes feedback and that has some waiting."""
    banks = Bank.objects.filter(exchange__api="ncmec").values_list("pk", flat=True)
    return [send_feedback(pk) for pk in banks if pending_feedback(pk).exists()]


FEEDBACK_HEADER = ["entry", "hash", "type", "label", "outcome", "recorded_at", "entry_status", "sent_at"]


class _Line:
    def write(self, value):
        return value


def feedback_lines(bank, *, since=None, chunk_size=5000):
    """The outcomes of a bank's entries as CSV, oldest first: for exchanges without an API. Names
    entries by their hash and the exchange's reference only, never our items, cases or people."""
    writer = csv.writer(_Line())
    yield writer.writerow(FEEDBACK_HEADER)
    rows = BankHashOutcome.objects.filter(bank_hash__bank=bank)
    if since:
        rows = rows.filter(created_at__gte=since)
    rows = rows.order_by("pk").values_list("bank_hash_id", "bank_hash__value", "bank_hash__hash_type",
                                            "bank_hash__label", "outcome", "created_at", "bank_hash__status", "sent_at")
    for entry, value, hash_type, label, outcome, created_at, status, sent_at in rows.iterator(chunk_size=chunk_size):
        yield writer.writerow([entry, value, hash_type, spreadsheet_safe(label), outcome, created_at.isoformat(),
                               status, sent_at.isoformat() if sent_at else ""])


def export_feedback(user, bank, *, since=None, ip=None):
    """Audit an export of the bank's outcomes (before the first byte leaves) and return its lines."""
    outcomes = BankHashOutcome.objects.filter(bank_hash__bank=bank)
    if since:
        outcomes = outcomes.filter(created_at__gte=since)
    with transaction.atomic():
        audit(user, Event.BANK_FEEDBACK_EXPORTED, object_type="bank", object_id=bank.pk, ip=ip,
              details={"name": bank.name, "outcomes": outcomes.count(),
                       "since": since.isoformat() if since else None})
    return feedback_lines(bank, since=since)
