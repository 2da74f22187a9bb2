"""Items: the photos, videos and texts the platform sent, and their scan state."""

from django.db import models
from django.db.models import Q
from django.utils import timezone

from detection.models.subjects import Account, Group


class ItemKind(models.TextChoices):
    IMAGE = "image", "Image"
    VIDEO = "video", "Video"
    TEXT = "text", "Text"


class ItemStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    SCANNED = "scanned", "Scanned"
    REJECTED = "rejected", "Rejected"


class EvidenceOnHold(Exception):
    """Evidence under legal hold cannot be deleted or purged until the hold is lifted."""


def held_now():
    """Items with a legal hold in force. Holds are placed by preservation (cases.models.LegalHold,
    related_name "holds"); the item only asks, through the relation, so that no layer below cases
    imports it."""
    return Q(holds__lifted_at__isnull=True, holds__until__gt=timezone.now())


class ItemQuerySet(models.QuerySet):
    def delete(self):
        held = self.filter(held_now()).values_list("pk", flat=True).distinct()
        if held.exists():
            raise EvidenceOnHold(f"items under legal hold: {', '.join(map(str, held[:20]))}")
        return super().delete()


class Item(models.Model):
    # Indexed by the composite indexes below, which lead with them (an index of their own would be one
    # more write for every item received).
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="items", db_index=False)
    group = models.ForeignKey(Group, on_delete=models.PROTECT, null=True, blank=True, related_name="items",
                              db_index=False)
    kind = models.CharField(max_length=16, choices=ItemKind, default=ItemKind.IMAGE)
    external_id = models.CharField(max_length=255, blank=True)
    original_name = models.CharField(max_length=255, blank=True)
    declared_type = models.CharField(max_length=127, blank=True)
    size = models.PositiveBigIntegerField(default=0)
    storage_path = models.CharField(max_length=512, blank=True, help_text="Relative to EVIDENCE_ROOT")
    hash_only = models.BooleanField(default=False, help_text="The platform sent hashes only: no media is held")
    text = models.TextField(blank=True)
    uploaded_at = models.DateTimeField(null=True, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    # How far the item travelled, as the platform counted it (null: not sent). Known material that
    # spread widely is more urgent to act on: routing.priority reads these through the match signal.
    forward_count = models.PositiveBigIntegerField(null=True, blank=True, help_text="Times forwarded")
    forward_chats = models.PositiveBigIntegerField(null=True, blank=True, help_text="Distinct chats it reached")
    forwarded_many = models.BooleanField(null=True, blank=True,
                                         help_text="Carries the platform's 'forwarded many times' mark")
    md5 = models.CharField(max_length=32)  # indexed in Meta: db_index would add a LIKE index nothing uses
    sha256 = models.CharField(max_length=64)
    # Filled by the scan.
    detected_format = models.CharField(max_length=16, blank=True)
    width = models.PositiveIntegerField(null=True, blank=True)
    height = models.PositiveIntegerField(null=True, blank=True)
    pdq = models.CharField(max_length=64, blank=True)
    pdq_quality = models.PositiveSmallIntegerField(null=True, blank=True)
    # Every orientation's PDQ as scanned (32 bytes each, in detectors.hashing's dihedral order, then the
    # untrimmed hash when bars were cut): what retroactive matching searches when new hashes arrive.
    pdq_orientations = models.BinaryField(null=True, blank=True, editable=False)
    phash = models.CharField(max_length=16, blank=True)
    dhash = models.CharField(max_length=16, blank=True)
    status = models.CharField(max_length=16, choices=ItemStatus, default=ItemStatus.QUEUED)
    reject_reason = models.CharField(max_length=500, blank=True)
    scan_attempts = models.PositiveSmallIntegerField(default=0)
    # A scan claims the item by writing its token and start time; the claim lapses after
    # SCAN_LEASE_SECONDS so that a scan whose worker died is taken up again.
    scan_token = models.CharField(max_length=32, blank=True)
    scan_started_at = models.DateTimeField(null=True, blank=True)
    enqueued_at = models.DateTimeField(default=timezone.now)
    scanned_at = models.DateTimeField(null=True, blank=True)
    removed_at = models.DateTimeField(null=True, blank=True)
    purged_at = models.DateTimeField(null=True, blank=True, help_text="Evidence bytes destroyed")
    verified_at = models.DateTimeField(null=True, blank=True, help_text="Last SHA-256 check of the stored bytes")
    frame_hashes = models.JSONField(default=list, blank=True,
                                    help_text="Video/animation: [{t, pdq, quality}] per sampled frame")
    classified_at = models.DateTimeField(null=True, blank=True, help_text="Classifiers ran (new-content detection)")
    created_at = models.DateTimeField(auto_now_add=True)

    objects = ItemQuerySet.as_manager()

    class Meta:
        db_table = "cases_item"  # the table keeps the name it had in the cases app
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["enqueued_at"], name="item_pending_idx", condition=Q(status="queued")),
            # For the daily metrics rollup: each day's rows are read by range.
            models.Index(fields=["created_at"], name="item_created_idx"),
            models.Index(fields=["md5"], name="item_md5_idx"),
            models.Index(fields=["sha256"], name="item_sha256_idx"),
            # A retried submission is known by its account and external_id (intake._already_received).
            models.Index(fields=["account", "external_id"], name="item_account_external_idx"),
            # The index of stored items reads them in (scanned_at, id) order, keyset-paged: a batch of
            # thousands scanned in one transaction shares its scanned_at, and without the id in the index
            # each page would sort every row of that instant again.
            models.Index(fields=["scanned_at", "id"], name="item_scanned_id_idx"),
            # Scanned files waiting for the classifiers: what their claim and the sweep read, never a
            # scan of every scanned item.
            models.Index(fields=["id"], name="item_unclassified_idx",
                         condition=Q(status="scanned", classified_at__isnull=True, purged_at__isnull=True,
                                     hash_only=False, kind__in=["image", "video"])),
            # A subject's timeline, newest first and paged by time, for subjects with thousands of items.
            models.Index(fields=["account", "created_at", "id"], name="item_account_time_idx"),
            models.Index(fields=["group", "created_at", "id"], name="item_group_time_idx"),
        ]

    def __str__(self):
        return f"item {self.pk} ({self.kind}, {self.status})"

    def delete(self, *args, **kwargs):
        if self.on_hold:
            raise EvidenceOnHold(f"item {self.pk} is under legal hold")
        return super().delete(*args, **kwargs)

    @property
    def on_hold(self):
        return Item.objects.filter(held_now(), pk=self.pk).exists()

    @property
    def is_visual(self):
        return self.kind in (ItemKind.IMAGE, ItemKind.VIDEO) and self.status == ItemStatus.SCANNED
