"""Indexes for the search box, on PostgreSQL only: trigram (pg_trgm, GIN gin_trgm_ops) on screen, display and
group names, so that similar and substring names are found without reading every row, and B-trees on the
identifiers searched for equality (an item's PDQ and IP, an account's email and phone).

SQLite gets none of them: its search reads the names with a bounded LIKE (see cases.search). Built
CONCURRENTLY (outside a transaction) so that a large live table is not locked while it is indexed.
"""

from django.db import migrations

INDEXES = [
    ("search_account_screen_trgm", "cases_account USING gin (screen_name gin_trgm_ops)"),
    ("search_account_display_trgm", "cases_account USING gin (display_name gin_trgm_ops)"),
    ("search_group_name_trgm", "cases_group USING gin (name gin_trgm_ops)"),
    # Whole-column B-trees: a partial one (WHERE email <> '') would not serve `UPPER(email) = UPPER(%s)`, whose
    # planner cannot prove the condition. UPPER(...::text) is what Django's iexact compares.
    ("search_account_email", "cases_account (UPPER(email::text))"),
    ("search_account_phone", "cases_account (phone)"),
    ("search_item_pdq", "cases_item (pdq)"),
    ("search_item_ip", "cases_item (ip) WHERE ip IS NOT NULL"),
]


def create(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    for name, target in INDEXES:
        schema_editor.execute(f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON {target}")


def drop(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name, _ in INDEXES:
        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("detection", "0009_investigations")]

    operations = [migrations.RunPython(create, drop, elidable=False)]
