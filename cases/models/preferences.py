"""How a reviewer (or the organisation) wants evidence shown."""

from django.conf import settings
from django.db import models
from django.db.models import Q


class ViewingPreference(models.Model):
    """How evidence is rendered for a reviewer, per content category. A row without a user is the
    organisation's default; a category of "" applies to every category."""

    class Blur(models.TextChoices):
        STRONG = "strong", "Strong blur"
        LIGHT = "light", "Light blur"
        NONE = "none", "No blur (cleared reviewers, with another filter)"

    class Tone(models.TextChoices):
        GREYSCALE = "greyscale", "Greyscale"
        SEPIA = "sepia", "Sepia"
        COLOUR = "colour", "Colour"

    class Detail(models.TextChoices):
        FULL = "full", "Full detail"
        REDUCED = "reduced", "Reduced detail (illustration-like)"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, null=True, blank=True,
                             related_name="viewing_preferences")
    category = models.SlugField(blank=True, help_text="A review queue slug, or empty for all categories")
    blur = models.CharField(max_length=8, choices=Blur, default=Blur.STRONG)
    tone = models.CharField(max_length=10, choices=Tone, default=Tone.GREYSCALE)
    detail = models.CharField(max_length=8, choices=Detail, default=Detail.FULL)
    warning_screen = models.BooleanField(default=False,
                                         help_text="Show what the detectors found instead of the image")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "category"], name="one_preference_per_category"),
            models.UniqueConstraint(fields=["category"], condition=Q(user__isnull=True),
                                    name="one_default_per_category"),
        ]

    def __str__(self):
        return f"{self.user or 'organisation'} / {self.category or 'all'}"

    @property
    def signature(self):
        return f"{self.blur}-{self.tone}-{self.detail}"

    def problem_for(self, user):
        """Why this preference may not be used by this user, or None."""
        if self.blur == self.Blur.NONE:
            if user is not None and not user.has_perm("cases.reveal_evidence"):
                return "Only reviewers cleared to reveal evidence may turn blurring off."
            if self.tone == self.Tone.COLOUR and self.detail == self.Detail.FULL and not self.warning_screen:
                return ("Without blur keep another filter (greyscale, sepia or reduced detail); "
                        "reveal shows an item as it is.")
        return None

    @classmethod
    def for_user(cls, user, category=""):
        """The most specific preference: the user's for the category, the user's for all, then the
        organisation's for the category and for all, then the built-in safe default."""
        rows = {(p.user_id, p.category): p for p in cls.objects.filter(
            Q(user=user) | Q(user__isnull=True), category__in={category, ""})}
        for key in ((user.pk, category), (user.pk, ""), (None, category), (None, "")):
            if key in rows:
                return rows[key]
        return cls()
