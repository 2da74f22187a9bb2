"""Indexes for the leads' audit search: "what came from this address" and "what happened to this object".

Every other filter of the search already has an index (created_at, action, actor, case, item). Without
these, an IP or object filter that matches little walks the whole log (measured: 0.9 s at two million
rows on PostgreSQL, growing with the log). On PostgreSQL they are built CONCURRENTLY, so a large,
busy log keeps taking rows while they build; hence not atomic. The model does not declare them: they
serve one page's queries and are managed here alone.
"""

from django.db import migrations

INDEXES = [
    ("audit_ip_time_idx", "(ip, created_at)", "ip IS NOT NULL"),
    ("audit_object_time_idx", "(object_type, object_id, created_at)", "object_type <> ''"),
]


def create(apps, schema_editor):
    concurrently = "CONCURRENTLY " if schema_editor.connection.vendor == "postgresql" else ""
    for name, columns, where in INDEXES:
        schema_editor.execute(
            f"CREATE INDEX {concurrently}IF NOT EXISTS {name} ON cases_auditevent {columns} WHERE {where}")


def drop(apps, schema_editor):
    concurrently = "CONCURRENTLY " if schema_editor.connection.vendor == "postgresql" else ""
    for name, _, _ in INDEXES:
        schema_editor.execute(f"DROP INDEX {concurrently}IF EXISTS {name}")


class Migration(migrations.Migration):

    atomic = False

    dependencies = [
        ("audit", "0002_auditevent_links"),
    ]

    operations = [migrations.RunPython(create, drop, elidable=False)]
