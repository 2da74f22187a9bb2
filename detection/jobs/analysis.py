"""Subject analysis jobs: score a group's or an account's risk and text surfaces, and store the signals.

A subject is pending while `analysed_at` is null or older than `updated_at`. An upsert hands the
subject here after it commits; the sweep (`analyse_pending`) re-enqueues any subject left pending,
so a lost job or a flushed Redis only delays the analysis. Running twice is harmless: a signal's
dedupe key holds the score's bucket, so the same facts give the same key and one signal, while a
score that rises a bucket gives a new signal (and re-opens or adds to the subject's case).
"""

import logging
from collections import Counter
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Count, F, Q
from django.utils import timezone

from detection import termlists
from detection.detectors import risk
from detection.models import (
    Account,
    AccountLink,
    Group,
    Item,
    Membership,
    Signal,
    SignalKind,
    SubjectStatus,
    UserReport,
)
from reviewconsole.queueing import enqueue, enqueue_now

log = logging.getLogger(__name__)

SUBJECTS = {"account": Account, "group": Group}
REPORT_WINDOW = timedelta(days=30)
JOIN_WINDOW = timedelta(days=7)
SEVERITY = {risk.GROUP_RISK: 70, risk.ACCOUNT_RISK: 60, risk.TEEN_CONTACT: 85}
TITLES = {risk.GROUP_RISK: "Group risk", risk.ACCOUNT_RISK: "Account risk",
          risk.TEEN_CONTACT: "Adult contacting teens"}
ENFORCING = ["ban", "remove", "report"]  # cases.models.Action values that act on the account
CARRIED_OUT = ["", "approved"]  # not waiting for, nor refused by, a second reviewer
# At most this many linked accounts are counted (enough to saturate the features many times over).
LINKED_LIMIT = 200
SWEEP_BATCH = 50
# Platform facts passed through to the teen-contact score (metadata only, never message content).
TEEN_FACTS = ("teen_non_contacts_initiated_7d", "non_contacts_initiated_7d", "blocked_by_teens_30d",
              "reported_by_teens_30d")
# What recipients of any age did when the account first contacted them (the platform's prompt).
FIRST_CONTACT_FACTS = ("first_contact_blocks_30d", "first_contact_reports_30d", "group_adds_refused_30d")
# Where a group's members came from: public listings of its invite link, referring apps.
GROUP_SOURCE_FACTS = ("invite_listings", "referral_joins", "invite_join_share")


def thresholds():
    return {risk.GROUP_RISK: settings.RISK_GROUP_THRESHOLD, risk.ACCOUNT_RISK: settings.RISK_ACCOUNT_THRESHOLD,
            risk.TEEN_CONTACT: settings.RISK_TEEN_CONTACT_THRESHOLD}


def _facts(subject):
    return subject.facts if isinstance(subject.facts, dict) else {}


# Jobs ---------------------------------------------------------------------------------------

def analyse_subject(kind, pk):
    """Score one subject now and store what crossed a threshold. Returns the ids of new signals."""
    model = SUBJECTS[kind]
    subject = model.objects.filter(pk=pk).first()
    if subject is None:
        return []
    started = timezone.now()  # facts changed after this moment leave the subject pending
    signals = []
    if subject.status != SubjectStatus.BANNED:  # already enforced: nothing left for a reviewer to do
        limits = thresholds()
        for assessment in assess(kind, subject):
            signal = build_signal(kind, subject, assessment, limits[assessment.detector])
            if signal is not None:
                signals.append(signal)
        signals += termlists.surface_signals(**{kind: subject})
    with transaction.atomic():
        # ignore_conflicts returns no ids (on any database), so the rows are read back by key; a
        # signal stored by an earlier run but never triaged is handed on again.
        Signal.objects.bulk_create(signals, ignore_conflicts=True)
        keys = [s.dedupe_key for s in signals]
        new = list(Signal.objects.filter(dedupe_key__in=keys, triaged_at__isnull=True).values_list("pk", flat=True))
        # Of two overlapping runs, the later start stands: an earlier one must not mark newer facts seen.
        model.objects.filter(Q(analysed_at__isnull=True) | Q(analysed_at__lt=started), pk=pk).update(
            analysed_at=started)
        if new:
            enqueue("cases.jobs.triage_signals", new, queue="triage")
    return new


def analyse_subjects(kind, pks):
    """The sweep's batch: analyse each subject that is still pending; one failure spares the rest."""
    done = 0
    for pk in SUBJECTS[kind].objects.filter(pending(), pk__in=pks).values_list("pk", flat=True):
        try:
            analyse_subject(kind, pk)
            done += 1
        except Exception:
            log.exception("analysis of %s %s failed; it stays pending", kind, pk)
    return done


def pending():
    return Q(analysed_at__isnull=True) | Q(analysed_at__lt=F("updated_at"))


def analyse_pending(cutoff, limit=None):
    """Enqueue analysis of subjects pending since before `cutoff`, oldest first. Returns how many.

    The condition compares two columns, so without an index on it each run scans the subject tables;
    the limit bounds the work a run hands on.
    """
    limit = settings.RISK_SWEEP_LIMIT if limit is None else limit
    handed = 0
    for kind, model in SUBJECTS.items():
        pks = list(model.objects.filter(pending(), updated_at__lte=cutoff).order_by("updated_at")
                   .values_list("pk", flat=True)[:limit])
        for start in range(0, len(pks), SWEEP_BATCH):
            batch = pks[start:start + SWEEP_BATCH]
            if enqueue_now("detection.jobs.analysis.analyse_subjects", kind, batch, queue="default"):
                handed += len(batch)
    return handed


# Scoring ------------------------------------------------------------------------------------

def assess(kind, subject):
    if kind == "group":
        return [risk.group_features(group_facts(subject))]
    return [risk.account_features(account_facts(subject)), risk.teen_contact(teen_facts(subject))]


def build_signal(kind, subject, assessment, threshold):
    """The signal for an assessment at or above its threshold, else None."""
    if assessment.score < threshold:
        return None
    detector = assessment.detector
    bucket = int(assessment.score * 10)
    top = assessment.top(1)
    label = TITLES[detector] + (f": {top[0].label.lower()}" if top else "")
    return Signal(
        account=subject if kind == "account" else None,
        group=subject if kind == "group" else None,
        kind=SignalKind.BEHAVIOUR,
        detector=detector,
        label=label[:128],
        score=round(assessment.score, 3),
        severity=SEVERITY[detector],
        explanation=assessment.explanation(threshold),
        details={**assessment.details(threshold), "bucket": bucket},
        dedupe_key=f"{kind}:{subject.pk}:{detector}:{bucket}",
    )


# Facts from the rows --------------------------------------------------------------------------

def group_facts(group, now=None):
    now = now or timezone.now()
    platform = _facts(group)
    memberships = Membership.objects.filter(group=group)
    member_ids = memberships.values("account_id")
    rows = memberships.count()
    ages = Counter()
    for band, n in _count_by(memberships, "account__age_band"):
        ages[risk.age_group(band)] += n
    recent = UserReport.objects.filter(created_at__gte=now - REPORT_WINDOW)
    about = recent.filter(Q(group=group) | Q(item__group=group) | Q(account_id__in=member_ids))
    facts = {
        "members": max(group.member_count or 0, rows),
        "matched_members": Signal.objects.filter(kind=SignalKind.HASH_MATCH, account_id__in=member_ids)
        .values("account_id").distinct().count(),
        "reporters": about.values("reporter").distinct().count(),
        "reported_members": recent.filter(account_id__in=member_ids).values("account_id").distinct().count(),
        "invite_link_resets_7d": platform.get("invite_link_resets_7d"),
        "media_post_share": platform.get("media_post_share"),
        "member_joins_7d": _joins(platform, memberships, now),
        "teen_members": _at_least(platform.get("teen_members"), ages[risk.TEEN]),
        "adult_members": _at_least(platform.get("adult_members"), ages[risk.ADULT]),
        "unknown_age_members": ages[risk.UNKNOWN],
        # Where members came from: passed through as sent (the risk features skip malformed entries).
        **{key: platform[key] for key in GROUP_SOURCE_FACTS if key in platform},
    }
    return facts


def _count_by(queryset, field):
    return queryset.values_list(field).annotate(n=Count("pk")).values_list(field, "n")


def _at_least(platform_count, seen):
    """The platform knows every member; we may know only those it sent, so take the larger."""
    reported = risk.number(platform_count)
    return seen if reported is None else max(reported, seen)


def _joins(platform, memberships, now):
    reported = risk.number(platform.get("member_joins_7d"))
    if not memberships.filter(joined_at__isnull=False).exists():
        return reported  # None when neither side knows
    seen = memberships.filter(joined_at__gte=now - JOIN_WINDOW).count()
    return seen if reported is None else max(reported, seen)


def account_facts(account, now=None):
    now = now or timezone.now()
    platform = _facts(account)
    item_signals = Signal.objects.filter(item__account=account)
    groups = Group.objects.filter(membership__account=account)
    linked = list(linked_accounts(account).values_list("pk", flat=True)[:LINKED_LIMIT])
    return {
        "items": Item.objects.filter(account=account).count(),
        "matched_items": item_signals.filter(kind=SignalKind.HASH_MATCH).values("item_id").distinct().count(),
        "flagged_items": item_signals.filter(kind__in=[SignalKind.CLASSIFIER, SignalKind.TEXT])
        .values("item_id").distinct().count(),
        "reporters": UserReport.objects.filter(account=account, created_at__gte=now - REPORT_WINDOW)
        .values("reporter").distinct().count(),
        "groups": groups.count(),
        "flagged_groups": groups.filter(
            Q(status=SubjectStatus.BANNED) | Q(signals__kind=SignalKind.HASH_MATCH)
            | Q(signals__detector=risk.GROUP_RISK)).distinct().count(),
        # Decisions live in the cases app above this one: asked through the account's cases
        # (Case.account, related_name "cases") rather than imported.
        "prior_enforcement": account.cases.aggregate(n=Count("decisions", filter=Q(
            decisions__action__in=ENFORCING, decisions__undone_at__isnull=True,
            decisions__approval__in=CARRIED_OUT)))["n"],
        "banned": account.status == SubjectStatus.BANNED,
        "linked_accounts": len(linked),
        "linked_enforced": Account.objects.filter(pk__in=linked).filter(
            Q(status=SubjectStatus.BANNED) | Q(signals__kind=SignalKind.HASH_MATCH)).distinct().count(),
        **{key: platform[key] for key in FIRST_CONTACT_FACTS if key in platform},
    }


def teen_facts(account, now=None):
    now = now or timezone.now()
    platform = _facts(account)
    facts = {key: platform.get(key) for key in TEEN_FACTS}
    facts["age_band"] = account.age_band
    reporters = UserReport.objects.filter(account=account, created_at__gte=now - REPORT_WINDOW).values("reporter")
    bands = Account.objects.filter(external_id__in=reporters).values_list("age_band", flat=True)
    teens = sum(1 for band in bands if risk.age_group(band) == risk.TEEN)
    facts["reported_by_teens_30d"] = _at_least(platform.get("reported_by_teens_30d"), teens)
    return facts


def linked_accounts(account):
    """Other accounts that share the phone hash or a device hash: an index lookup on AccountLink."""
    keys = AccountLink.objects.filter(account=account).values_list("kind", "value")
    match = Q()
    for kind, value in keys:
        match |= Q(links__kind=kind, links__value=value)
    if not match:
        return Account.objects.none()
    return Account.objects.filter(match).exclude(pk=account.pk).distinct()
