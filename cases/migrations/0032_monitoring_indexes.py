"""Indexes for monitoring: CyberTipline reports not filed, by status, and deliveries given up.

On PostgreSQL built CONCURRENTLY (outside a transaction) so that a large live table is not locked."""

from django.db import migrations, models
from django.db.models import Q

from reviewconsole.dbindexes import concurrent_indexes

INDEXES = [
    ("cybertipreport", models.Index(fields=["status", "created_at"], name="cybertip_unfiled_idx",
                                    condition=~Q(status="filed"))),
    ("enforcement", models.Index(fields=["platform"], name="enforcement_failed_idx", condition=Q(status="failed"))),
]


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("cases", "0031_queue_stats"),
    ]

    operations = concurrent_indexes("cases", INDEXES)
