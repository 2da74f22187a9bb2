"""Changing enforcement policies: every change of effects is a new version, kept and audited."""

from django.db import transaction

from cases.models import Policy, PolicyVersion
from cases.models.policies import EFFECT_FIELDS
from reviewconsole.audit.events import Event
from reviewconsole.audit.recorder import audit


def save_policy(user, policy, *, ip=None):
    """Save a policy edited in admin. A change of effects bumps the version and stores it, so that
    every decision's `policy_version` can be read back; reportable categories stay reporting."""
    with transaction.atomic():
        created = policy.pk is None
        before = None if created else Policy.objects.select_for_update().get(pk=policy.pk)
        changed = created or any(getattr(before, name) != getattr(policy, name) for name in EFFECT_FIELDS)
        if not created:
            policy.version = before.version + (1 if changed else 0)
        policy.save()  # forces report and hold for reportable categories
        if changed:
            PolicyVersion.objects.create(policy=policy, version=policy.version, effects=policy.effects(),
                                         changed_by=user if getattr(user, "pk", None) else None)
        audit(user, Event.POLICY_CREATED if created else Event.POLICY_CHANGED, object_type="policy",
              object_id=policy.pk, ip=ip,
              details={"code": policy.code, "version": policy.version, "effects": policy.effects(),
                       "before": None if created else before.effects()})
    return policy
