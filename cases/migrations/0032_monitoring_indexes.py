"""Indexes for monitoring: CyberTipline reports not filed, by status, and deliveries given up.

On PostgreSQL built CONCURRENTLY (outside a transaction) so that a large live table is not locked."""

from django.db import migrations, models
from django.db.models import Q

INDEXES = [
    ("cybertipreport", models.Index(fields=["status", "created_at"], name="cybertip_unfiled_idx",
                                    condition=~Q(status="filed"))),
    ("enforcement", models.Index(fields=["platform"], name="enforcement_failed_idx", condition=Q(status="failed"))),
]


def create(apps, schema_editor):
    for model_name, index in INDEXES:
        model = apps.get_model("cases", model_name)
        if schema_editor.connection.vendor == "postgresql":
            sql = str(index.create_sql(model, schema_editor))
            schema_editor.execute(sql.replace("CREATE INDEX", "CREATE INDEX CONCURRENTLY IF NOT EXISTS", 1))
        else:
            schema_editor.add_index(model, index)


def drop(apps, schema_editor):
    for model_name, index in INDEXES:
        model = apps.get_model("cases", model_name)
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {index.name}")
        else:
            schema_editor.remove_index(model, index)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("cases", "0031_queue_stats"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.AddIndex(model_name=name, index=index) for name, index in INDEXES],
            database_operations=[migrations.RunPython(create, drop, elidable=False)],
        ),
    ]
