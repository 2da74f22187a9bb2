"""Fewer indexes on the table every item lands in: each one is written for every item received.

- account and group: their own indexes were only prefixes of the timeline indexes (account or group,
  created_at, id), which serve the same lookups. A retried submission is recognised by account and
  external_id: an index on those two replaces the account's, so the check reads one index entry an
  item instead of every item of the account.
- md5 and sha256: Django gave each a second index for LIKE prefixes, which nothing asks; the plain one
  stays, under a name of ours.
- scanned_at alone: (scanned_at, id) serves everything it did.

On PostgreSQL every index is built and dropped CONCURRENTLY (outside a transaction), so that a large
live table is neither locked nor written twice while it changes.
"""

from django.db import migrations, models

TABLE = "cases_item"
# (column, name the kept plain index gets); every other Django-made index on exactly that column goes.
RENAMED = [("md5", "item_md5_idx"), ("sha256", "item_sha256_idx")]
DROPPED_COLUMNS = ["account_id", "group_id"]
ADDED = [("item_account_external_idx", "(account_id, external_id)")]
REMOVED = ["item_scanned_idx"]


def _single_column_indexes(schema_editor, column):
    """Names of the non-unique indexes Django made on exactly `column` (the ones it names after the table)."""
    with schema_editor.connection.cursor() as cursor:
        found = schema_editor.connection.introspection.get_constraints(cursor, TABLE)
    return sorted(name for name, spec in found.items()
                  if spec["index"] and not spec["unique"] and not spec["primary_key"] and spec["columns"] == [column]
                  and name.startswith(f"{TABLE}_"))


def forward(apps, schema_editor):
    postgres = schema_editor.connection.vendor == "postgresql"
    concurrently = "CONCURRENTLY " if postgres else ""
    for name, target in ADDED:
        schema_editor.execute(f"CREATE INDEX {concurrently}IF NOT EXISTS {name} ON {TABLE} {target}")
    for column, name in RENAMED:
        old = _single_column_indexes(schema_editor, column)
        plain = [n for n in old if not n.endswith("_like")]
        if postgres and plain:
            schema_editor.execute(f"ALTER INDEX {plain[0]} RENAME TO {name}")
            old.remove(plain[0])
        else:  # SQLite cannot rename an index
            schema_editor.execute(f"CREATE INDEX {concurrently}IF NOT EXISTS {name} ON {TABLE} ({column})")
        for index in old:
            schema_editor.execute(f"DROP INDEX {concurrently}IF EXISTS {index}")
    for column in DROPPED_COLUMNS:
        for index in _single_column_indexes(schema_editor, column):
            schema_editor.execute(f"DROP INDEX {concurrently}IF EXISTS {index}")
    for name in REMOVED:
        schema_editor.execute(f"DROP INDEX {concurrently}IF EXISTS {name}")


def backward(apps, schema_editor):
    concurrently = "CONCURRENTLY " if schema_editor.connection.vendor == "postgresql" else ""
    for column in DROPPED_COLUMNS:
        schema_editor.execute(f"CREATE INDEX {concurrently}IF NOT EXISTS {TABLE}_{column}_fk ON {TABLE} ({column})")
    schema_editor.execute(f"CREATE INDEX {concurrently}IF NOT EXISTS item_scanned_idx ON {TABLE} (scanned_at)")
    for column, name in RENAMED:
        schema_editor.execute(f"CREATE INDEX {concurrently}IF NOT EXISTS {TABLE}_{column}_plain ON {TABLE} ({column})")
        schema_editor.execute(f"DROP INDEX {concurrently}IF EXISTS {name}")
    for name, _ in ADDED:
        schema_editor.execute(f"DROP INDEX {concurrently}IF EXISTS {name}")


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("detection", "0015_item_scanned_id_index"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="item", name="account",
                    field=models.ForeignKey(db_index=False, on_delete=models.PROTECT, related_name="items",
                                            to="detection.account"),
                ),
                migrations.AlterField(
                    model_name="item", name="group",
                    field=models.ForeignKey(blank=True, db_index=False, null=True, on_delete=models.PROTECT,
                                            related_name="items", to="detection.group"),
                ),
                migrations.AlterField(model_name="item", name="md5", field=models.CharField(max_length=32)),
                migrations.AlterField(model_name="item", name="sha256", field=models.CharField(max_length=64)),
                migrations.RemoveIndex(model_name="item", name="item_scanned_idx"),
                migrations.AddIndex(model_name="item", index=models.Index(fields=["md5"], name="item_md5_idx")),
                migrations.AddIndex(model_name="item", index=models.Index(fields=["sha256"], name="item_sha256_idx")),
                migrations.AddIndex(model_name="item", index=models.Index(fields=["account", "external_id"],
                                                                          name="item_account_external_idx")),
            ],
            database_operations=[migrations.RunPython(forward, backward, elidable=False)],
        ),
    ]
