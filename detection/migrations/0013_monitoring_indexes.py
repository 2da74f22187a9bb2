"""Scanned files waiting for the classifiers: their claim, the sweep and monitoring read this index.

On PostgreSQL built CONCURRENTLY (outside a transaction) so that a large live table is not locked."""

from django.db import migrations, models
from django.db.models import Q

from reviewconsole.dbindexes import concurrent_indexes

INDEXES = [
    ("item", models.Index(fields=["id"], name="item_unclassified_idx", condition=Q(
        status="scanned", classified_at__isnull=True, purged_at__isnull=True, hash_only=False,
        kind__in=["image", "video"]))),
]


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("detection", "0012_clusters"),
    ]

    operations = concurrent_indexes("detection", INDEXES)
