"""Roles are Django groups with permissions; this keeps them in the shape the console expects."""

from django.apps import apps as global_apps
from django.contrib.auth.management import create_permissions
from django.contrib.auth.models import Group, Permission

ROLES = {
    # Reviews cases from the blurred renditions; bans, removes, escalates, dismisses.
    "reviewer": ["cases.review_case", "cases.investigate"],
    # Child-safety specialist: may also reveal evidence and report to NCMEC.
    "specialist": ["cases.review_case", "cases.reveal_evidence", "cases.investigate"],
    # Senior reviewer: everything a specialist may, plus the escalations queue.
    # Hash banks (lists of known material) are seen and changed only by seniors and admins.
    "senior": ["cases.review_case", "cases.reveal_evidence", "cases.review_escalated", "cases.file_cybertip",
               "cases.investigate",
               "detection.view_bank", "detection.add_bank", "detection.change_bank", "cases.manage_rules"],
    # Intelligence analyst: searches and follows networks across accounts, groups and media; sees evidence
    # only as blurred renditions and decides nothing.
    "analyst": ["cases.investigate"],
    # Law-enforcement liaison: handles legal requests; sees no review queue and no evidence.
    "liaison": ["cases.handle_legal_requests"],
}


def ensure_roles(**kwargs):
    # Called after the cases app migrates, which may be before later apps have their permissions.
    labels = {dotted.split(".")[0] for codenames in ROLES.values() for dotted in codenames}
    for label in labels - {"cases"}:
        if global_apps.is_installed(label):
            create_permissions(global_apps.get_app_config(label), verbosity=0, using=kwargs.get("using", "default"))
    for name, codenames in ROLES.items():
        group, _ = Group.objects.get_or_create(name=name)
        if not codenames:
            group.permissions.clear()
            continue
        permissions = []
        for dotted in codenames:
            app_label, codename = dotted.split(".")
            permission = Permission.objects.filter(content_type__app_label=app_label, codename=codename).first()
            if permission is None:
                return  # permissions are created later in the same migrate run; we are called again
            permissions.append(permission)
        group.permissions.set(permissions)
