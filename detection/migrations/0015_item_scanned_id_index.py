"""The index of stored items reads items in (scanned_at, id) order, keyset-paged: with only scanned_at
indexed, a page among many items sharing one scanned_at (a batch scanned in one transaction, a bulk
load) sorted all of them again, and loading 10 M items took over an hour instead of minutes.

On PostgreSQL built CONCURRENTLY (outside a transaction) so that a large live table is not locked."""

from django.db import migrations, models

INDEX = models.Index(fields=["scanned_at", "id"], name="item_scanned_id_idx")


def create(apps, schema_editor):
    model = apps.get_model("detection", "item")
    if schema_editor.connection.vendor == "postgresql":
        sql = str(INDEX.create_sql(model, schema_editor))
        schema_editor.execute(sql.replace("CREATE INDEX", "CREATE INDEX CONCURRENTLY IF NOT EXISTS", 1))
    else:
        schema_editor.add_index(model, INDEX)


def drop(apps, schema_editor):
    model = apps.get_model("detection", "item")
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {INDEX.name}")
    else:
        schema_editor.remove_index(model, INDEX)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("detection", "0014_spread_facts"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.AddIndex(model_name="item", index=INDEX)],
            database_operations=[migrations.RunPython(create, drop, elidable=False)],
        ),
    ]
