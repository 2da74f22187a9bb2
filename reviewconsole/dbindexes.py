"""Indexes added to large live tables by migrations: built CONCURRENTLY on PostgreSQL (outside a
transaction, so that the table is not locked while it is indexed), as usual elsewhere.

A migration that uses this sets `atomic = False` and lists `concurrent_indexes(...)` as its operations.
"""

from django.db import migrations


def concurrent_indexes(app_label, indexes, raw=()):
    """Operations adding `indexes` ([(model name, models.Index)]) to `app_label`'s models, and `raw`
    ([(index name, "table (expression)")], PostgreSQL only: expression indexes Django does not model)."""

    def create(apps, schema_editor):
        postgres = schema_editor.connection.vendor == "postgresql"
        if postgres:
            for name, target in raw:
                schema_editor.execute(f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON {target}")
        for model_name, index in indexes:
            model = apps.get_model(app_label, model_name)
            if postgres:
                sql = str(index.create_sql(model, schema_editor))
                schema_editor.execute(sql.replace("CREATE INDEX", "CREATE INDEX CONCURRENTLY IF NOT EXISTS", 1))
            else:
                schema_editor.add_index(model, index)

    def drop(apps, schema_editor):
        postgres = schema_editor.connection.vendor == "postgresql"
        if postgres:
            for name, _ in raw:
                schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
        for model_name, index in indexes:
            if postgres:
                schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {index.name}")
            else:
                schema_editor.remove_index(apps.get_model(app_label, model_name), index)

    return [migrations.SeparateDatabaseAndState(
        state_operations=[migrations.AddIndex(model_name=name, index=index) for name, index in indexes],
        database_operations=[migrations.RunPython(create, drop, elidable=False)],
    )]
