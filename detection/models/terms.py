"""Term lists for text surfaces, edited in admin."""

from django.db import models


class TermCategory(models.TextChoices):
    GROOMING = "grooming", "Grooming"
    SOLICITATION = "solicitation", "Solicitation of images"
    SEXTORTION = "sextortion", "Sextortion"
    TRADE = "trade", "Trading or selling material"
    AGE = "age", "Age indicator"
    OFF_PLATFORM = "off_platform", "Moving to another app"
    OTHER = "other", "Other"


class TermMatch(models.TextChoices):
    WORD = "word", "Whole word or phrase"
    SUBSTRING = "substring", "Anywhere, even inside words"
    PATTERN = "pattern", "Regular expression"


class TextTerm(models.Model):
    """One entry of the text-surface lists: matched against normalised bios, names and descriptions."""

    category = models.CharField(max_length=16, choices=TermCategory)
    term = models.CharField(max_length=255, help_text="Written plainly; the text it is matched against is normalised")
    match = models.CharField(max_length=10, choices=TermMatch, default=TermMatch.WORD)
    weight = models.FloatField(default=0.5, help_text="0..1: how strongly one hit suggests harm")
    enabled = models.BooleanField(default=True)
    note = models.CharField(max_length=255, blank=True, help_text="Why it is on the list")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["category", "term"]
        constraints = [models.UniqueConstraint(fields=["category", "term", "match"], name="unique_text_term")]

    def __str__(self):
        return f"{self.get_category_display()}: {self.term}"
