"""The index of stored items reads items in (scanned_at, id) order, keyset-paged: with only scanned_at
indexed, a page among many items sharing one scanned_at (a batch scanned in one transaction, a bulk
load) sorted all of them again, and loading 10 M items took over an hour instead of minutes.

On PostgreSQL built CONCURRENTLY (outside a transaction) so that a large live table is not locked."""

from django.db import migrations, models

from reviewconsole.dbindexes import concurrent_indexes

INDEX = models.Index(fields=["scanned_at", "id"], name="item_scanned_id_idx")


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("detection", "0014_spread_facts"),
    ]

    operations = concurrent_indexes("detection", [("item", INDEX)])
