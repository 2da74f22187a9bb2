"""Scanned files waiting for the classifiers: their claim, the sweep and monitoring read this index.

On PostgreSQL built CONCURRENTLY (outside a transaction) so that a large live table is not locked."""

from django.db import migrations, models
from django.db.models import Q

INDEXES = [
    ("item", models.Index(fields=["id"], name="item_unclassified_idx", condition=Q(
        status="scanned", classified_at__isnull=True, purged_at__isnull=True, hash_only=False,
        kind__in=["image", "video"]))),
]


def create(apps, schema_editor):
    for model_name, index in INDEXES:
        model = apps.get_model("detection", model_name)
        if schema_editor.connection.vendor == "postgresql":
            sql = str(index.create_sql(model, schema_editor))
            schema_editor.execute(sql.replace("CREATE INDEX", "CREATE INDEX CONCURRENTLY IF NOT EXISTS", 1))
        else:
            schema_editor.add_index(model, index)


def drop(apps, schema_editor):
    for model_name, index in INDEXES:
        model = apps.get_model("detection", model_name)
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {index.name}")
        else:
            schema_editor.remove_index(model, index)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("detection", "0012_clusters"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.AddIndex(model_name=name, index=index) for name, index in INDEXES],
            database_operations=[migrations.RunPython(create, drop, elidable=False)],
        ),
    ]
