"""Hash banks of known material, the allow-list and the local bank."""

import re

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models


class HashType(models.TextChoices):
    PDQ = "pdq", "PDQ"
    PHASH = "phash", "pHash"
    DHASH = "dhash", "dHash"
    MD5 = "md5", "MD5"
    SHA256 = "sha256", "SHA-256"


HEX_LENGTHS = {HashType.PDQ: 64, HashType.PHASH: 16, HashType.DHASH: 16, HashType.MD5: 32, HashType.SHA256: 64}


HEX_RE = re.compile(r"^[0-9a-f]+$")


def normalise_hash(value, hash_type):
    value = (value or "").strip().lower()
    if value.startswith("0x"):
        value = value[2:]
    expected = HEX_LENGTHS[hash_type]
    if len(value) != expected or not HEX_RE.match(value):
        raise ValueError(f"not a {hash_type} hash: expected {expected} hex digits, got {value[:80]!r}")
    return value


class BankKind(models.TextChoices):
    KNOWN = "known", "Known material"
    LOCAL = "local", "Confirmed by our reviewers"
    ALLOW = "allow", "Allow-list (known false positives)"


class BankTrust(models.TextChoices):
    """How far a bank's entries are trusted to act on their own (automation rules read it)."""
    VERIFIED = "verified", "Verified (each entry confirmed by a hotline or clearinghouse)"
    UNVERIFIED = "unverified", "Unverified (shared by a third party, not confirmed)"
    LOCAL = "local", "Local (confirmed by our own reviewers)"


class EntryStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    DECONFIRMED = "deconfirmed", "Deconfirmed (matches are recorded, never acted on)"
    QUARANTINED = "quarantined", "Quarantined by the circuit breaker (matches go to people)"


class EntryOutcome(models.TextChoices):
    CONFIRMED = "confirmed", "Confirmed by a reviewer"
    DISMISSED = "dismissed", "Dismissed by a reviewer"
    AUTO_ACTIONED = "auto_actioned", "Acted on by an automation rule"
    OVERTURNED = "overturned", "An action on it was rolled back or overturned"


class Bank(models.Model):
    name = models.SlugField(max_length=100, unique=True)
    description = models.CharField(max_length=255, blank=True)
    kind = models.CharField(max_length=8, choices=BankKind, default=BankKind.KNOWN,
                            help_text="An allow-list bank's matches suppress the other banks' matches")
    source = models.CharField(max_length=64, blank=True, help_text="Where the hashes come from, e.g. ncmec, file")
    trust = models.CharField(max_length=12, choices=BankTrust, default=BankTrust.UNVERIFIED,
                             help_text="Automation rules may require a verified bank before acting alone")
    enabled = models.BooleanField(default=True)
    severity = models.PositiveSmallIntegerField(default=90, help_text="0..100, used for case priority")
    pdq_threshold = models.PositiveSmallIntegerField(default=31, help_text="Max Hamming distance of 256 bits")
    phash_threshold = models.PositiveSmallIntegerField(default=6, help_text="Max Hamming distance of 64 bits")
    dhash_threshold = models.PositiveSmallIntegerField(default=6, help_text="Max Hamming distance of 64 bits")
    video_match_percent = models.PositiveSmallIntegerField(
        default=80, help_text="Video: share of frames (of the query and of the bank video) that must match")
    entry_counts = models.JSONField(default=dict, blank=True, editable=False,
                                    help_text="Entries by hash type, as last counted (counting 10M rows takes seconds)")
    counted_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    def threshold_for(self, hash_type):
        return {
            HashType.PDQ: self.pdq_threshold,
            HashType.PHASH: self.phash_threshold,
            HashType.DHASH: self.dhash_threshold,
        }.get(hash_type, 0)


class BankHash(models.Model):
    bank = models.ForeignKey(Bank, on_delete=models.CASCADE, related_name="hashes")
    hash_type = models.CharField(max_length=16, choices=HashType)
    value = models.CharField(max_length=64, help_text="Lower-case hex")
    label = models.CharField(max_length=255, blank=True, help_text="Reference from the bank's source")
    media_key = models.CharField(max_length=64, blank=True,
                                 help_text="Frames of one video share a key (vPDQ-style matching)")
    frame_seconds = models.FloatField(null=True, blank=True, help_text="Time of this frame in its video")
    added_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                                 related_name="+")
    added_at = models.DateTimeField(auto_now_add=True)
    # The hash-quality loop: what became of this entry's matches, kept as running counts (the
    # outcome rows below hold each one) so that the bank pages and the breaker read one row.
    status = models.CharField(max_length=12, choices=EntryStatus, default=EntryStatus.ACTIVE)
    status_reason = models.CharField(max_length=255, blank=True)
    status_changed_at = models.DateTimeField(null=True, blank=True)
    match_count = models.PositiveIntegerField(default=0)
    confirm_count = models.PositiveIntegerField(default=0)
    dismiss_count = models.PositiveIntegerField(default=0)
    auto_action_count = models.PositiveIntegerField(default=0)
    last_matched_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["bank", "hash_type", "value"]
        verbose_name = "bank hash"
        constraints = [
            models.UniqueConstraint(fields=["bank", "hash_type", "value"], name="unique_bank_hash"),
        ]
        indexes = [
            models.Index(fields=["hash_type", "value"], name="bankhash_lookup_idx"),
            models.Index(fields=["media_key"], name="bankhash_media_idx", condition=~models.Q(media_key="")),
            # Browsing by label prefix, and removing an exchange's entries by their reference.
            models.Index(fields=["bank", "label"], name="bankhash_label_idx"),
            models.Index(fields=["bank", "status"], name="bankhash_status_idx", condition=~models.Q(status="active")),
        ]

    def __str__(self):
        return f"{self.hash_type}:{self.value[:16]}… in {self.bank}"

    def clean(self):
        if self.hash_type in HashType.values:
            try:
                self.value = normalise_hash(self.value, self.hash_type)
            except ValueError as exc:
                raise ValidationError({"value": str(exc)}) from None


class BankHashOutcome(models.Model):
    """One outcome of one entry's match (a reviewer confirmed or dismissed it, a rule acted on it),
    kept for the hash-quality loop and sent back to the exchange the entry came from."""

    bank_hash = models.ForeignKey(BankHash, on_delete=models.CASCADE, related_name="outcomes")
    outcome = models.CharField(max_length=16, choices=EntryOutcome)
    decision = models.ForeignKey("cases.Decision", on_delete=models.SET_NULL, null=True, blank=True,
                                 related_name="+")
    item = models.ForeignKey("detection.Item", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True, help_text="Sent back to the entry's exchange")
    send_error = models.CharField(max_length=255, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["created_at"], name="bankhashoutcome_unsent_idx",
                                condition=models.Q(sent_at__isnull=True))]

    def __str__(self):
        return f"{self.outcome} on entry {self.bank_hash_id}"


class HashExchange(models.Model):
    """Where a bank's fetch from an external hash-sharing API stands, so the next run continues."""

    bank = models.OneToOneField(Bank, on_delete=models.CASCADE, related_name="exchange")
    api = models.CharField(max_length=32, default="ncmec")
    checkpoint = models.JSONField(default=dict, blank=True,
                                  help_text="The API's own resume point (time range and paging link)")
    fetched_at = models.DateTimeField(null=True, blank=True, help_text="Last run that finished without error")
    last_error = models.TextField(blank=True)
    last_error_at = models.DateTimeField(null=True, blank=True)
    totals = models.JSONField(default=dict, blank=True, help_text="Running counts: added, removed, skipped")

    def __str__(self):
        return f"{self.api} into {self.bank}"


class ImportStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"


class BankImport(models.Model):
    """A hash list uploaded on a bank's page, imported by a background job (detection.banks.run_import).

    The file waits in the private evidence store (never under a URL); the row is the record of the
    work: `queued` until a job claims it, `running` with its progress counts, then `done` or `failed`.
    """

    MAX_ERRORS = 100  # bad lines kept to show; error_count counts them all

    bank = models.ForeignKey(Bank, on_delete=models.CASCADE, related_name="imports")
    file_path = models.CharField(max_length=255, help_text="Relative to the evidence root")
    file_name = models.CharField(max_length=200, blank=True)
    size = models.PositiveBigIntegerField(default=0)
    format = models.CharField(max_length=8, choices=[("txt", "Plain text"), ("csv", "CSV"), ("tsv", "TSV")])
    hash_type = models.CharField(max_length=16, choices=HashType, blank=True)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                                     related_name="+")
    status = models.CharField(max_length=8, choices=ImportStatus, default=ImportStatus.QUEUED)
    lines_read = models.PositiveIntegerField(default=0)
    imported = models.PositiveIntegerField(default=0)
    duplicates = models.PositiveIntegerField(default=0)
    error_count = models.PositiveIntegerField(default=0)
    errors = models.JSONField(default=list, blank=True, help_text="The first bad lines, with their numbers")
    error = models.TextField(blank=True, help_text="Why the import failed")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["status", "created_at"], name="bankimport_pending_idx")]

    def __str__(self):
        return f"import #{self.pk} into {self.bank_id} ({self.status})"
