"""Lead queries: the live roster of claims and exposure, reporters' standing, the audit search, and the
invite-link sources (referrals) groups came through."""

import ipaddress
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.db.models import F, FloatField, Max, Q
from django.db.models.functions import Cast, NullIf
from django.utils import timezone

from cases.models import Action, Case, CaseStatus
from cases.selectors import reviewers
from cases.wellness import exposure_today
from detection.detectors import risk
from detection.intake import CHILD_SAFETY_REASONS
from detection.models import Group, Membership, Reporter, Signal, SignalKind, SubjectStatus, UserReport
from detection.reporters import POOR_RECORD_MIN_DECIDED, POOR_RECORD_UPHELD_SHARE, standing_of
from reviewconsole.audit.events import Event
from reviewconsole.audit.models import AuditEvent

# The audit rows that start a claim (its "since"): a claim, a take-over, a reassignment, an escalation to a senior.
CLAIM_EVENTS = (Event.CASE_CLAIMED, Event.CASE_TAKEN_OVER, Event.CASE_REASSIGNED, Event.CASE_ESCALATE)


# ---------------------------------------------------------------------------------------------- roster

def signed_in_user_ids(now=None, *, seen_key="policy_seen", started_key="policy_started"):
    """Ids of the users with a live session: not expired, and (where the session policy stamped it) neither
    idle past SESSION_IDLE_SECONDS nor older than SESSION_MAX_SECONDS. The keys are the session policy's."""
    now = now or timezone.now()
    stamp = now.timestamp()
    ids = set()
    for session in Session.objects.filter(expire_date__gt=now).iterator(chunk_size=500):
        data = session.get_decoded()
        user_id = data.get("_auth_user_id")
        if user_id is None:
            continue
        seen, started = data.get(seen_key), data.get(started_key)
        if seen is not None and stamp - seen > settings.SESSION_IDLE_SECONDS:
            continue
        if started is not None and stamp - started > settings.SESSION_MAX_SECONDS:
            continue
        try:
            ids.add(int(user_id))
        except (TypeError, ValueError):
            continue
    return ids


@dataclass
class Claim:
    case: Case
    since: datetime
    signed_in: bool
    lease_expired: bool


@dataclass
class ReviewerRow:
    user: object
    signed_in: bool
    holding: int
    reveals: int
    minutes: int
    over_budget: bool


@dataclass
class Roster:
    claims: list
    reviewers: list
    signed_out_claims: list = field(default_factory=list)


def roster(now=None, *, signed_in=None):
    """Who holds which case since when, and each reviewer's exposure today and whether they are signed in."""
    now = now or timezone.now()
    signed_in = signed_in_user_ids(now) if signed_in is None else signed_in
    cases = list(Case.objects.filter(status=CaseStatus.CLAIMED, closed_at__isnull=True, assigned_to__isnull=False)
                 .select_related("queue", "assigned_to", "account", "group").order_by("assigned_to__username", "pk"))
    since = dict(AuditEvent.objects.filter(case__in=[c.pk for c in cases], action__in=CLAIM_EVENTS)
                 .values("case_id").annotate(at=Max("created_at")).values_list("case_id", "at"))
    lease = timedelta(seconds=settings.CASE_LEASE_SECONDS)
    claims = [Claim(case=c, signed_in=c.assigned_to_id in signed_in,
                    since=since.get(c.pk) or (c.lease_expires_at - lease if c.lease_expires_at else c.updated_at),
                    lease_expired=bool(c.lease_expires_at and c.lease_expires_at <= now)) for c in cases]
    holding = {}
    for claim in claims:
        holding[claim.case.assigned_to_id] = holding.get(claim.case.assigned_to_id, 0) + 1
    start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    active_today = set(AuditEvent.objects.filter(created_at__gte=start, actor__isnull=False)
                       .values_list("actor_id", flat=True).distinct())
    people = reviewers().filter(pk__in=set(holding) | set(signed_in) | active_today)
    rows = []
    for user in people:
        exposure = exposure_today(user, now)
        rows.append(ReviewerRow(user=user, signed_in=user.pk in signed_in, holding=holding.get(user.pk, 0),
                                reveals=exposure.reveals, minutes=exposure.minutes,
                                over_budget=exposure.over_budget))
    return Roster(claims=claims, reviewers=rows, signed_out_claims=[c for c in claims if not c.signed_in])


# ------------------------------------------------------------------------------------------- reporters

REPORTER_FILTERS = ("all", "muted", "trusted", "poor")
REPORTER_SORTS = {"dismissed": ("-dismissed_share", "-reports"), "reports": ("-reports", "external_id"),
                  "reporter": ("external_id",)}


def reporters(*, show="all", sort="dismissed", q=""):
    """Reporters with their standing; `show` narrows to muted, trusted or poor-record ones."""
    share = Cast(F("dismissed"), FloatField()) / NullIf(Cast(F("reports"), FloatField()), 0.0)
    rows = Reporter.objects.annotate(dismissed_share=share).select_related("muted_by", "trusted_by")
    if show == "muted":
        rows = rows.filter(muted_at__isnull=False)
    elif show == "trusted":
        rows = rows.filter(trusted_at__isnull=False)
    elif show == "poor":
        rows = rows.filter(reports__gte=POOR_RECORD_MIN_DECIDED,
                           upheld__lt=F("reports") * POOR_RECORD_UPHELD_SHARE)
    if q:
        rows = rows.filter(external_id__icontains=q)
    order = [F(name[1:]).desc(nulls_last=True) if name.startswith("-") else F(name).asc()
             for name in REPORTER_SORTS.get(sort, REPORTER_SORTS["dismissed"])]
    return rows.order_by(*order, "pk")


def reporter_standings(case):
    """For each user report on the case, its reporter's standing: [{report, reporter, weight}]."""
    report_ids = [d.get("report_id") for d in Signal.objects.filter(case=case, kind=SignalKind.USER_REPORT)
                  .values_list("details", flat=True) if isinstance(d, dict)]
    reports = list(UserReport.objects.filter(pk__in=[pk for pk in report_ids if isinstance(pk, int)])
                   .order_by("created_at", "pk"))
    known = {r.external_id: r for r in Reporter.objects.filter(external_id__in={r.reporter for r in reports})}
    return [{"report": r, "reporter": known.get(r.reporter),
             "weight": standing_of(known.get(r.reporter), child_safety=r.reason in CHILD_SAFETY_REASONS)}
            for r in reports]


# ----------------------------------------------------------------------------------------- audit search

AUDIT_PAGE = 50
AUDIT_CSV_MAX_ROWS = 10_000
FIELD_MAX = 200
PRESETS = {"viewed": (Event.EVIDENCE_VIEWED_BLURRED, Event.EVIDENCE_REVEALED),
           "revealed": (Event.EVIDENCE_REVEALED,)}


class FilterError(ValueError):
    """A filter the audit search cannot take; the message says which field and why."""


@dataclass
class AuditFilter:
    actor: str = ""
    events: tuple = ()
    case: int | None = None
    item: int | None = None
    object_type: str = ""
    object_id: str = ""
    ip: str = ""
    since: datetime | None = None
    until: datetime | None = None
    preset: str = ""

    def as_details(self):
        """The filter as recorded on the audit row of the search or the export."""
        return {k: (v.isoformat() if isinstance(v, datetime) else list(v) if isinstance(v, tuple) else v)
                for k, v in self.__dict__.items() if v not in ("", None, ())}


def _int(params, name):
    value = params.get(name, "").strip()
    if not value:
        return None
    if not value.isdigit() or len(value) > 18:
        raise FilterError(f"{name}: a number, please.")
    return int(value)


def _day(params, name, end=False):
    value = params.get(name, "").strip()
    if not value:
        return None
    try:
        day = datetime.strptime(value, "%Y-%m-%d").date()
    except ValueError:
        raise FilterError(f"{name}: a date as YYYY-MM-DD, please.") from None
    moment = datetime.combine(day + timedelta(days=1) if end else day, time.min)
    return timezone.make_aware(moment, timezone.get_current_timezone())


def parse_audit_filter(params):
    """An AuditFilter from query parameters (a QueryDict), or FilterError."""
    for name in params:
        if any(len(v) > FIELD_MAX for v in params.getlist(name)):
            raise FilterError(f"{name}: too long (at most {FIELD_MAX} characters).")
    preset = params.get("preset", "").strip()
    if preset and preset not in PRESETS:
        raise FilterError(f"preset: one of {', '.join(PRESETS)}.")
    events = [e.strip() for e in params.getlist("event") if e.strip()]
    valid = set(Event.values)
    bad = [e for e in events if e not in valid]
    if bad:
        raise FilterError(f"event: no such event “{bad[0]}”.")
    if len(events) > 20:
        raise FilterError("event: at most 20 events.")
    events = tuple(dict.fromkeys(events)) or PRESETS.get(preset, ())
    ip = params.get("ip", "").strip()
    if ip:
        try:
            ip = str(ipaddress.ip_address(ip))
        except ValueError:
            raise FilterError("ip: an IPv4 or IPv6 address, please.") from None
    since, until = _day(params, "since"), _day(params, "until", end=True)
    if since and until and since >= until:
        raise FilterError("since: the range ends before it starts.")
    return AuditFilter(actor=params.get("actor", "").strip(), events=events, case=_int(params, "case"),
                       item=_int(params, "item"), object_type=params.get("object_type", "").strip(),
                       object_id=params.get("object_id", "").strip(), ip=ip, since=since, until=until,
                       preset=preset)


def audit_rows(flt):
    """The audit rows matching the filter, newest first (keyset order: created_at, id)."""
    rows = AuditEvent.objects.all()
    if flt.actor:
        user = get_user_model().objects.filter(username=flt.actor).first()
        rows = rows.filter(actor=user) if user else rows.filter(actor__isnull=True, actor_label=flt.actor)
    if flt.events:
        rows = rows.filter(action__in=flt.events)
    if flt.case is not None:
        rows = rows.filter(case_id=flt.case)
    if flt.item is not None:
        rows = rows.filter(item_id=flt.item)
    if flt.object_type:
        rows = rows.filter(object_type=flt.object_type)
    if flt.object_id:
        rows = rows.filter(object_id=flt.object_id)
    if flt.ip:
        rows = rows.filter(ip=flt.ip)
    if flt.since:
        rows = rows.filter(created_at__gte=flt.since)
    if flt.until:
        rows = rows.filter(created_at__lt=flt.until)
    return rows.order_by("-created_at", "-id")


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def encode_cursor(event):
    """The position after `event`: its time in whole microseconds (exact, no float) and its id."""
    return f"{(event.created_at - EPOCH) // timedelta(microseconds=1)}.{event.pk}"


def decode_cursor(value):
    """(created_at, id) from a cursor, or FilterError."""
    try:
        micros, pk = value.split(".")
        at = EPOCH + timedelta(microseconds=int(micros))
        return at, int(pk)
    except (ValueError, OverflowError, OSError):
        raise FilterError("after: not a page of this search.") from None


def audit_page(flt, after=None, size=AUDIT_PAGE):
    """One page of matching rows after the cursor, and the cursor of the next page (or None)."""
    rows = audit_rows(flt).select_related("actor", "case", "item")
    if after:
        at, pk = decode_cursor(after)
        rows = rows.filter(Q(created_at__lt=at) | Q(created_at=at, id__lt=pk))
    page = list(rows[:size + 1])
    more = len(page) > size
    page = page[:size]
    return page, (encode_cursor(page[-1]) if more and page else None)


# ---------------------------------------------------------------------------------------------- referrals

# Groups read for the referrals page, most recently updated first: far more than a team takes to one app
# store at a time, and a bound on the page's cost.
REFERRAL_GROUP_LIMIT = 5000
REFERRAL_KINDS = ("site", "app")
ACTIONED = [Action.BAN, Action.REMOVE, Action.REPORT]


@dataclass
class SourceGroup:
    group: Group
    how: str  # "listed 2026-11-30" / "12 joins"
    actioned: bool
    actioned_members: int


@dataclass
class Source:
    name: str
    kind: str  # site | app
    groups: list = field(default_factory=list)
    referral_joins: float = 0
    last_seen: str = ""
    actioned_accounts: set = field(default_factory=set)

    @property
    def actioned_groups(self):
        return sum(1 for g in self.groups if g.actioned)


def _actioned(decisions_prefix):
    return Q(**{f"{decisions_prefix}__action__in": ACTIONED, f"{decisions_prefix}__undone_at__isnull": True})


def referral_sources(kind=""):
    """Invite-link sources (sites and apps that listed a group's link, apps that referred members) with
    the groups that came through them and the actioned accounts among those groups' members (banned,
    or banned, removed or reported by a decision), the sources with most actioned accounts first.

    The platform says where a group's link was found, not which member followed it: a group's actioned
    members are counted for each of its sources."""
    groups = list(Group.objects.filter(Q(facts__has_key="invite_listings") | Q(facts__has_key="referral_joins"))
                  .order_by("-updated_at", "-pk")[:REFERRAL_GROUP_LIMIT])
    ids = [g.pk for g in groups]
    actioned_groups = set(Group.objects.filter(pk__in=ids).filter(
        Q(status=SubjectStatus.BANNED) | _actioned("cases__decisions")).values_list("pk", flat=True))
    members = defaultdict(set)
    for group_id, account_id in (Membership.objects.filter(group_id__in=ids).filter(
            Q(account__status=SubjectStatus.BANNED) | _actioned("account__cases__decisions"))
            .values_list("group_id", "account_id").distinct()):
        members[group_id].add(account_id)
    sources = {}
    for group in groups:
        facts = group.facts if isinstance(group.facts, dict) else {}
        found = [(e["source"], e["kind"], f"listed {e['seen_at'][:10]}".strip(), 0, e["seen_at"])
                 for e in risk.invite_listings(facts)]
        found += [(r["app"], "app", f"{r['joins']:,.0f} joins", r["joins"], "") for r in risk.referrals(facts)]
        for name, source_kind, how, joins, seen in found:
            if kind and source_kind != kind:
                continue
            source = sources.setdefault((name, source_kind), Source(name, source_kind))
            row = next((g for g in source.groups if g.group.pk == group.pk), None)
            if row is None:
                source.groups.append(SourceGroup(group, how, group.pk in actioned_groups, len(members[group.pk])))
            else:
                row.how = f"{row.how}, {how}"
            source.referral_joins += joins
            source.last_seen = max(source.last_seen, seen)
            source.actioned_accounts |= members[group.pk]
    return sorted(sources.values(), key=lambda s: (-len(s.actioned_accounts), -s.actioned_groups, -len(s.groups),
                                                    s.name))
