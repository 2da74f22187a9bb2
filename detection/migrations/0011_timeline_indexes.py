"""Indexes for the account and group pages (a subject's items and signals newest first, paged by time,
and the reports a user made) and for external ids searched by prefix. On PostgreSQL they are built
CONCURRENTLY (outside a transaction) so that a large live table is not locked; elsewhere as usual."""

from django.db import migrations, models

from reviewconsole.dbindexes import concurrent_indexes

INDEXES = [
    ("item", models.Index(fields=["account", "created_at", "id"], name="item_account_time_idx")),
    ("item", models.Index(fields=["group", "created_at", "id"], name="item_group_time_idx")),
    ("signal", models.Index(fields=["account", "created_at", "id"], name="signal_account_time_idx")),
    ("signal", models.Index(fields=["group", "created_at", "id"], name="signal_group_time_idx")),
    ("userreport", models.Index(fields=["reporter", "created_at"], name="userreport_reporter_idx")),
]


# External ids searched by prefix: Django compares `external_id::text LIKE 'x%'`, which the unique index serves
# only under the C collation.
PREFIX_INDEXES = [("search_account_external_prefix", "cases_account ((external_id::text) text_pattern_ops)"),
                  ("search_group_external_prefix", "cases_group ((external_id::text) text_pattern_ops)")]


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("cases", "0029_investigations"),
        ("detection", "0010_search_indexes"),
    ]

    operations = concurrent_indexes("detection", INDEXES, raw=PREFIX_INDEXES)
