"""Reading hash lists from files and adding them to banks."""

import csv
import io
import re

from django.db import transaction
from django.utils import timezone

from .models import HEX_LENGTHS, Bank, BankHash, HashType

HEX_RE = re.compile(r"^[0-9a-f]+$")
MAX_LINE_CHARS = 4096
BATCH = 5000


class HashFileError(ValueError):
    pass


def normalise_hash(value, hash_type):
    value = (value or "").strip().lower()
    if value.startswith("0x"):
        value = value[2:]
    expected = HEX_LENGTHS[hash_type]
    if len(value) != expected or not HEX_RE.match(value):
        raise ValueError(f"not a {hash_type} hash: expected {expected} hex digits, got {value[:80]!r}")
    return value


def parse_hash_lines(lines, *, fmt, hash_type):
    """Yield (line_number, hash_type, value, label) or (line_number, None, error, None) per entry.

    txt: one hex hash a line, '#' comments. csv: columns hash[,type][,label] with an optional
    header row naming them (hash/value, type/hash_type, label/id/reference).
    """
    if fmt == "txt":
        for number, raw in enumerate(lines, 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            yield _checked(number, line, hash_type, "")
        return
    reader = csv.reader(lines, delimiter="\t" if fmt == "tsv" else ",")
    columns = None
    for number, row in enumerate(reader, 1):
        if not row or not "".join(row).strip() or row[0].startswith("#"):
            continue
        lowered = [cell.strip().lower() for cell in row]
        if columns is None and any(name in lowered for name in ("hash", "value")):
            columns = {name: lowered.index(name) for name in lowered}
            continue
        columns = columns or {"hash": 0, "type": 1, "label": 2}
        value = _cell(row, columns, "hash", "value")
        row_type = (_cell(row, columns, "type", "hash_type") or hash_type or "").strip().lower()
        label = _cell(row, columns, "label", "id", "reference")
        if row_type not in HashType.values:
            yield number, None, f"unknown hash type {row_type!r}", None
            continue
        yield _checked(number, value, row_type, label)


def _cell(row, columns, *names):
    for name in names:
        index = columns.get(name)
        if index is not None and index < len(row):
            return row[index].strip()
    return ""


def _checked(number, value, hash_type, label):
    if len(value) > MAX_LINE_CHARS:
        return number, None, "line too long", None
    if not hash_type:
        return number, None, "no hash type: pass --type or add a type column", None
    try:
        return number, hash_type, normalise_hash(value, hash_type), (label or "")[:255]
    except ValueError as exc:
        return number, None, str(exc), None


def import_hashes(bank_name, stream, *, fmt="txt", hash_type=None, progress=None, description=""):
    """Add the hashes in a text stream to a bank (created if missing). Returns a summary dict.

    Lines that are not valid hashes are counted and reported, never imported; valid lines before
    and after them still are. Duplicates of hashes already in the bank are skipped.
    """
    if isinstance(stream, (bytes, bytearray)):
        stream = io.StringIO(stream.decode("utf-8", errors="replace"))
    bank, created = Bank.objects.get_or_create(name=bank_name, defaults={"description": description})
    summary = {"bank": bank.name, "created": created, "read": 0, "added": 0, "duplicates": 0, "errors": []}
    batch = []

    def flush():
        if not batch:
            return
        with transaction.atomic():
            existing = set(
                BankHash.objects.filter(bank=bank, value__in={h.value for h in batch}).values_list(
                    "hash_type", "value"
                )
            )
            fresh = {}
            for entry in batch:
                key = (entry.hash_type, entry.value)
                if key not in existing:
                    fresh.setdefault(key, entry)
            BankHash.objects.bulk_create(fresh.values(), ignore_conflicts=True, batch_size=BATCH)
        summary["added"] += len(fresh)
        summary["duplicates"] += len(batch) - len(fresh)
        batch.clear()

    for number, row_type, value, label in parse_hash_lines(stream, fmt=fmt, hash_type=hash_type):
        summary["read"] += 1
        if progress:
            progress(1)
        if row_type is None:
            if len(summary["errors"]) < 100:
                summary["errors"].append(f"line {number}: {value}")
            summary.setdefault("error_count", 0)
            summary["error_count"] += 1
            continue
        batch.append(BankHash(bank=bank, hash_type=row_type, value=value, label=label))
        if len(batch) >= BATCH:
            flush()
    flush()
    summary.setdefault("error_count", 0)
    Bank.objects.filter(pk=bank.pk).update(updated_at=timezone.now())
    return summary
