"""Load the shipped default text-term list (detection/data/default_terms.csv)."""

import csv
from pathlib import Path

from django.db import migrations

# The migration reads the file itself rather than importing detection.termlists, so it keeps
# working whatever later code looks like; the file is checked by the tests and by load_terms.
DEFAULT_TERMS = Path(__file__).resolve().parent.parent / "data" / "default_terms.csv"


def _rows():
    with DEFAULT_TERMS.open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            yield {
                "category": row["category"].strip(),
                "term": row["term"].strip(),
                "match": row["match"].strip(),
                "weight": float(row["weight"]),
                "note": (row.get("note") or "").strip()[:255],
            }


def load_defaults(apps, schema_editor):
    TextTerm = apps.get_model("detection", "TextTerm")
    for row in _rows():
        # get_or_create: never overwrite an admin's edit of the same entry.
        TextTerm.objects.get_or_create(
            category=row["category"], term=row["term"], match=row["match"],
            defaults={"weight": row["weight"], "note": row["note"], "enabled": True},
        )


def remove_defaults(apps, schema_editor):
    TextTerm = apps.get_model("detection", "TextTerm")
    for row in _rows():
        TextTerm.objects.filter(category=row["category"], term=row["term"], match=row["match"]).delete()


class Migration(migrations.Migration):

    dependencies = [
        ("detection", "0002_banks_kinds_video_terms"),
    ]

    operations = [
        migrations.RunPython(load_defaults, remove_defaults),
    ]
