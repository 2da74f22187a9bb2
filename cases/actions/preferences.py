"""A reviewer's own viewing preferences: how evidence is rendered for them, per category."""

from django.db import transaction

from cases.actions import ActionError
from cases.models import ViewingPreference
from cases.selectors import reviewable_queues
from reviewconsole.audit.events import Event
from reviewconsole.audit.recorder import audit

FIELDS = {"blur": ViewingPreference.Blur, "tone": ViewingPreference.Tone, "detail": ViewingPreference.Detail}


def save_viewing_preferences(user, choices, ip=None):
    """Save every category's choice at once, or nothing.

    `choices` maps a category ("" for all categories, else a queue slug the user may review) to
    None, meaning "inherit from all categories" (not allowed for ""), or to a dict with `blur`,
    `tone`, `detail` and `warning_screen`. Everything is checked before anything is written; an
    ActionError says what is wrong and leaves every row as it was.
    """
    allowed = {""} | set(reviewable_queues(user).values_list("slug", flat=True))
    rows = {}
    for category, values in choices.items():
        if category not in allowed:
            raise ActionError("Choose a category you review.")
        if values is None:
            if not category:
                raise ActionError("The preference for all categories cannot be inherited.")
            rows[category] = None
            continue
        if any(values.get(name) not in kind.values for name, kind in FIELDS.items()):
            raise ActionError("Choose a value from each list.")
        clean = {name: values[name] for name in FIELDS} | {"warning_screen": bool(values.get("warning_screen"))}
        problem = ViewingPreference(**clean).problem_for(user)
        if problem:
            raise ActionError(problem)
        rows[category] = clean
    with transaction.atomic():
        for category, values in rows.items():
            if values is None:
                ViewingPreference.objects.filter(user=user, category=category).delete()
            else:
                ViewingPreference.objects.update_or_create(user=user, category=category, defaults=values)
        audit(user, Event.ACCOUNT_VIEWING_PREFERENCES, object_type="user", object_id=user.pk, ip=ip,
              details={"own": {c or "all": v for c, v in rows.items() if v is not None},
                       "inherit": sorted(c for c, v in rows.items() if v is None)})
    return rows
