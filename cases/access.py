"""Who may see and do what: every view's permission check goes through these helpers."""

from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404

from cases.models import Case
from detection.models import Item


def require_reviewer(user):
    if not user.is_authenticated or not user.has_perm("cases.review_case"):
        raise PermissionDenied


def can_view_case(user, case):
    if not user.has_perm("cases.review_case"):
        return False
    return not case.queue.senior_only or user.has_perm("cases.review_escalated")


def access_case(user, case_id):
    require_reviewer(user)
    case = get_object_or_404(Case.objects.select_related("queue", "account", "group", "assigned_to"), pk=case_id)
    if not can_view_case(user, case):
        raise PermissionDenied
    return case


def access_item(user, item_id, *, reveal=False):
    """An item is visible to a reviewer who may view at least one case it is evidence in."""
    require_reviewer(user)
    if reveal and not user.has_perm("cases.reveal_evidence"):
        raise PermissionDenied
    item = get_object_or_404(Item, pk=item_id)
    cases = Case.objects.filter(signals__item=item).select_related("queue").distinct()
    if not any(can_view_case(user, case) for case in cases):
        raise PermissionDenied
    return item
