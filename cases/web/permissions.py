"""Who may see and do what: every page, portal and API endpoint asks here.

Each helper either returns what the caller may use (a case, an item, an officer's membership, an
API token) or raises PermissionDenied / Http404, as healthchecks' `_get_check_for_user` does. Roles
are Django groups with these permissions (see cases.roles); an active superuser has every one.
"""

from collections import defaultdict

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.utils import timezone
from django.utils.http import urlencode

from cases.models import ApiToken, Case, CyberTipReport, DestructionRequest
from detection.models import Account, Group, Item, Signal

REVIEW = "cases.review_case"
REVIEW_ESCALATED = "cases.review_escalated"
REVEAL = "cases.reveal_evidence"
FILE_CYBERTIP = "cases.file_cybertip"
HANDLE_LEGAL = "cases.handle_legal_requests"
INVESTIGATE = "cases.investigate"


def require_reviewer(user):
    if not user.is_authenticated or not user.has_perm(REVIEW):
        raise PermissionDenied


def require_investigator(user):
    """Search, subject pages and pivots: reviewers, specialists, seniors and analysts; never officers."""
    if not user.is_authenticated or not user.has_perm(INVESTIGATE) or hasattr(user, "agency_member"):
        raise PermissionDenied


def access_subject(user, kind, pk):
    """An account ("account") or a group ("group") for an investigator. Subjects are not hidden from one
    another's investigators: the evidence on their pages follows `can_view_item` like everywhere else."""
    require_investigator(user)
    if kind == "account":
        return get_object_or_404(Account, pk=pk)
    if kind == "group":
        return get_object_or_404(Group, pk=pk)
    raise Http404


def require_senior(user):
    """Escalations, QA, metrics and reviewer workload: senior reviewers (and admins)."""
    if not user.is_authenticated or not user.has_perm(REVIEW_ESCALATED):
        raise PermissionDenied


def require_rule_manager(user):
    """Automation rules act on thousands of accounts: seniors with the rules permission (and admins)."""
    if not user.is_authenticated or not user.has_perm("cases.manage_rules"):
        raise PermissionDenied


def require_report_access(user, perm=REVEAL):
    """CyberTipline reports hold the most sensitive record there is: as few people as possible see them."""
    if not user.is_authenticated or not user.has_perm(perm):
        raise PermissionDenied


def require_second_factor(request, back=None):
    """Steps that need the verified second factor whatever the role (approving or retracting a report,
    destroying evidence): None when the session has it, else the redirect to the verify page, which
    returns to `back` (a page, not the POST address) or to this page."""
    if request.user.is_verified():
        return None
    return redirect(f"{reverse('two_factor_verify')}?{urlencode({'next': back or request.get_full_path()})}")


def require_liaison(user):
    if not user.is_authenticated or not user.has_perm(HANDLE_LEGAL):
        raise PermissionDenied


def access_officer(user):
    """The agency membership of a law-enforcement officer whose agency is active."""
    member = getattr(user, "agency_member", None)
    if member is None or not member.agency.active:
        raise PermissionDenied
    return member


def require_bank_access(request, perm):
    """Banks hold the hashes of known abuse material: seniors and admins only, with a second factor.

    Returns None when the request may go on, or the redirect to the second-factor page."""
    if not request.user.has_perm(perm):
        raise PermissionDenied
    if not request.user.is_verified():
        return redirect(f"{reverse('two_factor_verify')}?{urlencode({'next': request.get_full_path()})}")
    return None


def can_view_case(user, case):
    if not user.has_perm(REVIEW):
        return False
    return not case.queue.senior_only or user.has_perm(REVIEW_ESCALATED)


def access_case(user, case_id):
    require_reviewer(user)
    case = get_object_or_404(Case.objects.select_related("queue", "account", "group", "assigned_to"), pk=case_id)
    if not can_view_case(user, case):
        raise PermissionDenied
    return case


def item_cases(item):
    """The cases the item is evidence in, and those about the account that sent it. Two indexed lookups
    joined by OR (a join on signals ORed with the account made PostgreSQL read every case: half a second
    at a million cases, on every thumbnail)."""
    evidence = Signal.objects.filter(item=item, case__isnull=False).values("case_id")
    return Case.objects.filter(Q(pk__in=evidence) | Q(account=item.account_id)).select_related("queue")


def can_view_item(user, item, *, reveal=False):
    """An item is visible to a reviewer who may view at least one case it is evidence in, or a case
    about the account that sent it (a reported child's own uploads, say, which no detector flagged).
    An investigator (search, subject pages, pivots) may also see the blurred rendition of an item in no
    case, or in cases of queues they may see; never one that only senior-only cases hold, and never
    revealed: a reveal always goes through a case the user may review."""
    if reveal:
        if not user.has_perm(REVEAL) or not user.has_perm(REVIEW):
            return False
        return any(can_view_case(user, case) for case in item_cases(item))
    cases = list(item_cases(item))
    if user.has_perm(REVIEW) and any(can_view_case(user, case) for case in cases):
        return True
    if not user.has_perm(INVESTIGATE) or hasattr(user, "agency_member"):
        return False
    return not any(case.queue.senior_only for case in cases) or user.has_perm(REVIEW_ESCALATED)


def visible_item_ids(user, items):
    """The ids of `items` whose blurred rendition `user` may see: `can_view_item` for many
    items in two queries instead of one per item."""
    items = list(items)
    if not items:
        return set()
    review, senior = user.has_perm(REVIEW), user.has_perm(REVIEW_ESCALATED)
    investigator = user.has_perm(INVESTIGATE) and not hasattr(user, "agency_member")
    by_item, by_account = defaultdict(list), defaultdict(list)
    for item_id, senior_only in (Case.objects.filter(signals__item__in=[i.pk for i in items])
                                 .values_list("signals__item", "queue__senior_only")):
        by_item[item_id].append(senior_only)
    for account_id, senior_only in (Case.objects.filter(account__in={i.account_id for i in items})
                                    .values_list("account", "queue__senior_only")):
        by_account[account_id].append(senior_only)
    visible = set()
    for item in items:
        flags = by_item[item.pk] + by_account[item.account_id]
        if review and any(not so or senior for so in flags):
            visible.add(item.pk)
        elif investigator and (senior or not any(flags)):
            visible.add(item.pk)
    return visible


def access_item(user, item_id, *, reveal=False):
    """The item, for a user who may see it (see `can_view_item`), or PermissionDenied."""
    if not user.is_authenticated or not (user.has_perm(REVIEW) or user.has_perm(INVESTIGATE)):
        raise PermissionDenied
    item = get_object_or_404(Item, pk=item_id)
    if not can_view_item(user, item, reveal=reveal):
        raise PermissionDenied
    return item


def access_report(user, report_id, perm=REVEAL):
    """A CyberTipline report follows its case: who may not see the case may not see or change its report."""
    require_report_access(user, perm)
    report = get_object_or_404(CyberTipReport.objects.select_related(
        "case__queue", "decision", "created_by", "approved_by"), pk=report_id)
    if not can_view_case(user, report.case):
        raise PermissionDenied
    return report


def visible_reports(user, reports=None):
    """The reports (of `reports`, else all) whose cases the user may view."""
    require_report_access(user)
    reports = CyberTipReport.objects.all() if reports is None else reports
    if not user.has_perm(REVIEW):
        return reports.none()
    return reports if user.has_perm(REVIEW_ESCALATED) else reports.exclude(case__queue__senior_only=True)


def access_destruction_request(user, request_id):
    """A request to destroy evidence, for a senior who files reports and may see the item's cases."""
    require_report_access(user, FILE_CYBERTIP)
    request_obj = get_object_or_404(DestructionRequest.objects.select_related("item", "requested_by"), pk=request_id)
    access_item(user, request_obj.item_id)
    return request_obj


def api_token_for(request):
    """The live platform token in `Authorization: Bearer ...`, or None; marks it used."""
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if not header.startswith("Bearer "):
        return None
    token = ApiToken.objects.filter(key_hash=ApiToken.hash_key(header[7:].strip()), revoked_at__isnull=True).first()
    if token is not None:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=timezone.now())
    return token


def client_ip(request):
    """The client's address. X-Forwarded-For is read only when settings.TRUSTED_PROXY_COUNT says that
    many proxies of ours stand in front, and then only the entry the outermost of them appended
    (whatever the client sent is to its left and ignored)."""
    remote = request.META.get("REMOTE_ADDR") or None
    count = settings.TRUSTED_PROXY_COUNT
    if count <= 0:
        return remote
    hops = [h.strip() for h in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if h.strip()]
    if len(hops) < count:
        return remote  # not through all our proxies: only the socket's address is known
    return hops[-count]
