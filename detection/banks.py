"""Banks: creating and changing them (audited actions), reading hash lists from files into them."""

import csv
import io
import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Max, Min, Q
from django.utils import timezone

from detection import matching, retro
from detection.detectors.vpdq import parse_vpdq_lines
from detection.models import Bank, BankHash, BankImport, BankKind, HashType, ImportStatus, normalise_hash
from reviewconsole import storage
from reviewconsole.audit.events import Event
from reviewconsole.audit.recorder import audit
from reviewconsole.queueing import enqueue, kick, kicked

log = logging.getLogger(__name__)
MAX_LINE_CHARS = 4096
BATCH = 5000


class HashFileError(ValueError):
    pass


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
    delimiter = "\t" if fmt == "tsv" else ","
    columns = None
    for number, raw in enumerate(lines, 1):
        # One row a line (hash lists never need quoted newlines), so that an overlong or broken
        # line is one rejected entry, not the end of the file.
        if len(raw) > MAX_LINE_CHARS:
            yield number, None, "line too long", None
            continue
        try:
            row = next(csv.reader([raw.rstrip("\r\n")], delimiter=delimiter), [])
        except csv.Error as exc:
            yield number, None, f"unreadable line: {exc}", None
            continue
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
    summary = _import_into(bank, stream, fmt=fmt, hash_type=hash_type, progress=progress)
    Bank.objects.filter(pk=bank.pk).update(updated_at=timezone.now())
    return {"bank": bank.name, "created": created, **summary}


def _import_into(bank, stream, *, fmt, hash_type, progress=None, on_flush=None):
    """Add a stream's hashes to `bank` in batches of BATCH, each in its own transaction.

    `on_flush(summary, final)` runs inside each batch's transaction (and once more, with
    final=True, in the last one even when it adds nothing), so a caller's progress row commits
    with the entries it counts. Hashes already in the bank are skipped, never added twice.
    """
    summary = {"read": 0, "added": 0, "duplicates": 0, "errors": [], "error_count": 0}
    batch = []

    def flush(final=False):
        if not batch and not (final and on_flush):
            return
        with transaction.atomic(), retro.new_entries(bank):
            fresh = {}
            if batch:
                existing = set(
                    BankHash.objects.filter(bank=bank, value__in={h.value for h in batch}).values_list(
                        "hash_type", "value"
                    )
                )
                for entry in batch:
                    key = (entry.hash_type, entry.value)
                    if key not in existing:
                        fresh.setdefault(key, entry)
                BankHash.objects.bulk_create(fresh.values(), ignore_conflicts=True, batch_size=BATCH)
            summary["added"] += len(fresh)
            summary["duplicates"] += len(batch) - len(fresh)
            batch.clear()
            if on_flush:
                on_flush(summary, final)

    for number, row_type, value, label in parse_hash_lines(stream, fmt=fmt, hash_type=hash_type):
        summary["read"] += 1
        if progress:
            progress(1)
        if row_type is None:
            if len(summary["errors"]) < 100:
                summary["errors"].append(f"line {number}: {value}")
            summary["error_count"] += 1
            continue
        batch.append(BankHash(bank=bank, hash_type=row_type, value=value, label=label))
        if len(batch) >= BATCH:
            flush()
    flush(final=True)
    return summary


# Uploads on a bank's page: queued as a row, imported by a job --------------------------------------

UPLOAD_FORMATS = ("txt", "csv", "tsv")


class _ClaimLost(Exception):
    """Another run took this import over (after the lease ran out); this one stops."""


def queue_import(user, bank, data, *, fmt, hash_type, ip=None, name=""):
    """Store an uploaded hash list privately and queue its import; returns the BankImport row.

    The row and its audit row commit together; the job is enqueued after the commit, and the
    sweep re-enqueues it from the row if that hand-off is lost.
    """
    hash_type = hash_type or ""
    if fmt not in UPLOAD_FORMATS:
        raise HashFileError(f"unknown format {fmt!r}")
    if hash_type and hash_type not in HashType.values:
        raise HashFileError(f"unknown hash type {hash_type!r}")
    if fmt == "txt" and not hash_type:
        raise HashFileError("a plain-text list holds bare hashes: say which type they are")
    if len(data) > settings.BANK_IMPORT_MAX_BYTES:
        raise HashFileError("the file is larger than the upload limit")
    path = storage.save_original(bytes(data), folder="bank-imports")
    with transaction.atomic():
        job = BankImport.objects.create(bank=bank, file_path=path, file_name=(name or "")[:200], size=len(data),
                                        format=fmt, hash_type=hash_type,
                                        requested_by=user if getattr(user, "pk", None) else None)
        audit(user, Event.BANK_IMPORT_QUEUED, object_type="bank", object_id=bank.pk, ip=ip,
              details={"name": bank.name, "import": job.pk, "file": job.file_name, "size": job.size,
                       "format": fmt, "hash_type": hash_type})
        enqueue("detection.banks.run_import", job.pk, queue="default")
    return job


def run_import(import_id):
    """The job: import one queued upload. Returns its final status, or None when there was nothing to do.

    Claimed with a conditional UPDATE (queued, or running past its lease), so a second run of a
    done, failed or freshly claimed import does nothing. Progress commits with each batch; the
    last batch, status "done" and the BANK_IMPORTED audit row commit together.
    """
    now = timezone.now()
    lease = timedelta(seconds=settings.BANK_IMPORT_LEASE_SECONDS)
    claimed = BankImport.objects.filter(pk=import_id).filter(
        Q(status=ImportStatus.QUEUED) | Q(status=ImportStatus.RUNNING, started_at__lt=now - lease)
    ).update(status=ImportStatus.RUNNING, started_at=now, finished_at=None, lines_read=0, imported=0,
             duplicates=0, error_count=0, errors=[], error="")
    if not claimed:
        return None
    job = BankImport.objects.select_related("bank", "requested_by").filter(pk=import_id).first()
    if job is None:  # the bank was deleted in between
        return None
    mine = BankImport.objects.filter(pk=job.pk, status=ImportStatus.RUNNING, started_at=now)

    def progress(summary, final):
        fields = {"lines_read": summary["read"], "imported": summary["added"], "duplicates": summary["duplicates"],
                  "error_count": summary["error_count"], "errors": summary["errors"][:BankImport.MAX_ERRORS]}
        if final:
            fields.update(status=ImportStatus.DONE, finished_at=timezone.now())
        if not mine.update(**fields):
            raise _ClaimLost
        if final:
            Bank.objects.filter(pk=job.bank_id).update(updated_at=timezone.now())
            audit(job.requested_by, Event.BANK_IMPORTED, object_type="bank", object_id=job.bank_id,
                  details={"name": job.bank.name, "import": job.pk, "file": job.file_name, "size": job.size,
                           "via": "upload", **{k: summary[k] for k in ("read", "added", "duplicates", "error_count")}})

    try:
        data = storage.read_original(job.file_path)
        if b"\x00" in data:
            raise HashFileError("a binary file, not a list of hashes")
        stream = io.StringIO(data.decode("utf-8", errors="replace"), newline="")
        _import_into(job.bank, stream, fmt=job.format, hash_type=job.hash_type or None, on_flush=progress)
    except _ClaimLost:
        log.warning("bank import %s was taken over by another run", job.pk)
        return None
    except Exception as exc:
        reason = str(exc) if isinstance(exc, HashFileError) else f"{type(exc).__name__}: {exc}"
        if isinstance(exc, OSError):
            reason = "the uploaded file could not be read"
        log.warning("bank import %s failed: %s", job.pk, reason, exc_info=not isinstance(exc, (HashFileError, OSError)))
        with transaction.atomic():
            if mine.update(status=ImportStatus.FAILED, finished_at=timezone.now(), error=reason[:1000]):
                audit(job.requested_by, Event.BANK_IMPORT_FAILED, object_type="bank", object_id=job.bank_id,
                      details={"name": job.bank.name, "import": job.pk, "file": job.file_name, "reason": reason[:1000]})
        return ImportStatus.FAILED
    storage.delete_original(job.file_path)  # the entries are in the bank now; the list need not stay
    matching.invalidate()  # this process at once, every worker when it is announced (or at its next poll)
    return ImportStatus.DONE


# Actions: every change of a bank's settings or entries by a person, atomic with its audit row ----
#
# Each one calls matching.invalidate(): this process looks again at once, and the change is announced to
# every worker when the transaction commits (their poll every few seconds is the fallback).

# What a person may set on a bank (its counts and timestamps are the console's own).
BANK_SETTINGS = ["name", "description", "kind", "source", "enabled", "severity", "pdq_threshold", "phash_threshold",
                 "dhash_threshold", "video_match_percent"]


def _via(details, via):
    return {**details, "via": via} if via else details


def create_bank(user, *, ip=None, via=None, **fields):
    """Create a bank from validated settings (name, kind, thresholds...) and record who did."""
    unknown = set(fields) - set(BANK_SETTINGS)
    if unknown:
        raise ValueError(f"not bank settings: {', '.join(sorted(unknown))}")
    with transaction.atomic():
        bank = Bank.objects.create(**fields)
        audit(user, Event.BANK_CREATED, object_type="bank", object_id=bank.pk, ip=ip,
              details=_via({"name": bank.name, "kind": bank.kind, "enabled": bank.enabled}, via))
    matching.invalidate()
    return bank


def change_bank(user, bank, changes, *, ip=None, via=None):
    """Apply `changes` ({setting: new value}) to a bank; the audit row holds each [before, after].

    The values before are read from the locked row, not from `bank` (a bound form may already
    have written the new values onto it). Changes to what the bank already holds are dropped; when
    none are left nothing is written. Returns the bank as saved.
    """
    unknown = set(changes) - set(BANK_SETTINGS)
    if unknown:
        raise ValueError(f"not bank settings: {', '.join(sorted(unknown))}")
    with transaction.atomic():
        current = Bank.objects.select_for_update().get(pk=bank.pk)
        diff = {name: [getattr(current, name), value] for name, value in changes.items()
                if getattr(current, name) != value}
        if diff:
            for name, (_, value) in diff.items():
                setattr(current, name, value)
            current.save(update_fields=[*diff, "updated_at"])
            audit(user, Event.BANK_CHANGED, object_type="bank", object_id=current.pk, ip=ip,
                  details=_via({"name": current.name, "changes": diff}, via))
    matching.invalidate()  # this process at once; workers when it is announced
    return current


def delete_bank(user, bank, *, ip=None, via=None):
    """Delete a bank and its entries, recording its name and how many entries went with it."""
    with transaction.atomic():
        bank = Bank.objects.select_for_update().get(pk=bank.pk)
        entries = BankHash.objects.filter(bank=bank).count()
        audit(user, Event.BANK_DELETED, object_type="bank", object_id=bank.pk, ip=ip,
              details=_via({"name": bank.name, "kind": bank.kind, "entries": entries}, via))
        bank.delete()
    matching.invalidate()


def remove_entry(user, entry, *, ip=None, via=None):
    """Remove one entry from its bank (which then reloads everywhere), recording what it held."""
    with transaction.atomic():
        entry = BankHash.objects.select_related("bank").get(pk=entry.pk)
        audit(user, Event.BANK_ENTRY_REMOVED, object_type="bank", object_id=entry.bank_id, ip=ip,
              details=_via({"name": entry.bank.name, "entry": entry.pk, "type": entry.hash_type,
                            "value": entry.value, "label": entry.label}, via))
        entry.delete()
        # A deleted entry moves no id, so the bank's updated_at tells the workers.
        Bank.objects.filter(pk=entry.bank_id).update(updated_at=timezone.now())
    matching.invalidate()


# Banks the console keeps itself ---------------------------------------------------------------

LOCAL_BANK = "local-confirmed"
ALLOW_BANK = "allow-list"
SYSTEM_BANKS = {
    LOCAL_BANK: {"kind": BankKind.LOCAL, "trust": "local", "source": "reviewers",
                 "description": "Material our reviewers confirmed (ban, remove or report)"},
    # A tight PDQ threshold: the allow-list should excuse one image and its re-encodings, not its neighbours.
    ALLOW_BANK: {"kind": BankKind.ALLOW, "source": "reviewers", "pdq_threshold": 16,
                 "description": "Known false positives: a match here suppresses the other banks' matches"},
}


def system_bank(name):
    bank, _ = Bank.objects.get_or_create(name=name, defaults=SYSTEM_BANKS[name])
    return bank


def item_entries(item):
    """The hashes of one item worth banking: its digests, its PDQ if usable, its video frames' PDQ."""
    if item.kind == "text":
        return []
    entries = [(HashType.MD5, item.md5, "", None), (HashType.SHA256, item.sha256, "", None)]
    if item.pdq and (item.pdq_quality or 0) >= settings.PDQ_MIN_QUALITY:
        entries.append((HashType.PDQ, item.pdq, "", None))
    for frame in item.frame_hashes or []:
        if frame.get("pdq") and (frame.get("quality") or 0) >= settings.PDQ_MIN_QUALITY:
            entries.append((HashType.PDQ, frame["pdq"], f"item-{item.pk}", frame.get("t")))
    checked = []
    for hash_type, value, media_key, seconds in entries:
        try:
            checked.append((hash_type, normalise_hash(value, hash_type), media_key, seconds))
        except ValueError:
            continue  # an item that was never hashed (rejected, purged) has nothing to bank
    return checked


def add_item_hashes(bank, items, *, user, label_for):
    """Add the items' hashes to a bank; returns the ids of the entries this call created.

    Hashes already in the bank are left as they are (and not returned), so that taking the
    additions back later never removes an entry that someone else put there.
    """
    wanted = {}
    for item in items:
        for hash_type, value, media_key, seconds in item_entries(item):
            wanted.setdefault((hash_type, value), BankHash(
                bank=bank, hash_type=hash_type, value=value, label=label_for(item)[:255], media_key=media_key,
                frame_seconds=seconds, added_by=user if getattr(user, "pk", None) else None))
    if not wanted:
        return []
    with transaction.atomic(), retro.new_entries(bank):
        existing = set(BankHash.objects.filter(bank=bank, value__in={v for _, v in wanted})
                       .values_list("hash_type", "value"))
        fresh = [entry for key, entry in wanted.items() if key not in existing]
        BankHash.objects.bulk_create(fresh, ignore_conflicts=True)
        ids = list(BankHash.objects.filter(
            bank=bank, value__in={e.value for e in fresh}, label__in={e.label for e in fresh}
        ).values_list("pk", flat=True)) if fresh else []
        if ids:
            Bank.objects.filter(pk=bank.pk).update(updated_at=timezone.now())
    matching.invalidate()
    return ids


def remove_entries(entry_ids):
    """Delete bank entries by id (the ones an action added); returns how many went."""
    entry_ids = [pk for pk in entry_ids or [] if isinstance(pk, int)]
    if not entry_ids:
        return 0
    with transaction.atomic():
        bank_ids = set(BankHash.objects.filter(pk__in=entry_ids).values_list("bank_id", flat=True))
        deleted, _ = BankHash.objects.filter(pk__in=entry_ids).delete()
        Bank.objects.filter(pk__in=bank_ids).update(updated_at=timezone.now())
    matching.invalidate()
    return deleted


# Export ---------------------------------------------------------------------------------------

EXPORT_HEADER = ["hash", "type", "label", "added_at"]
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(text):
    """A cell a spreadsheet will show as text, never run as a formula (CSV injection)."""
    return "'" + text if text and text.startswith(_FORMULA_START) else text


class _Line:
    def write(self, value):
        return value


def export_lines(bank, chunk_size=5000):
    """The bank as CSV text, one line at a time, read from the database in chunks."""
    writer = csv.writer(_Line())
    yield writer.writerow(EXPORT_HEADER)
    rows = BankHash.objects.filter(bank=bank).order_by("pk").values_list("value", "hash_type", "label", "added_at")
    for value, hash_type, label, added_at in rows.iterator(chunk_size=chunk_size):
        yield writer.writerow([value, hash_type, spreadsheet_safe(label), added_at.isoformat()])


# vPDQ: the frames of one bank video ------------------------------------------------------------

def import_vpdq(bank_name, stream, *, media_key, label="", min_quality=None, progress=None):
    """Add one video's per-frame vPDQ hashes to a bank as the frames of `media_key`.

    Bad lines are counted and reported, never imported. Frames below the quality floor are left
    out, as vPDQ leaves them out of matching: they would only lower the share a copy can reach.
    A frame hash already in the bank is kept where it is (one entry per hash and bank).
    """
    if isinstance(stream, (bytes, bytearray)):
        stream = io.StringIO(stream.decode("utf-8", errors="replace"))
    media_key = (media_key or "").strip()
    if not media_key or len(media_key) > 64:
        raise HashFileError("a video's frames need a media key (the --label or the file name) of 1 to 64 characters")
    min_quality = settings.PDQ_MIN_QUALITY if min_quality is None else min_quality
    bank, created = Bank.objects.get_or_create(name=bank_name, defaults={"description": "vPDQ video hashes"})
    summary = {"bank": bank.name, "created": created, "media_key": media_key, "read": 0, "added": 0,
               "duplicates": 0, "low_quality": 0, "error_count": 0, "errors": []}
    frames = {}
    for number, frame, error in parse_vpdq_lines(stream):
        summary["read"] += 1
        if progress:
            progress(1)
        if error:
            summary["error_count"] += 1
            if len(summary["errors"]) < 100:
                summary["errors"].append(f"line {number}: {error}")
        elif frame[2] < min_quality:
            summary["low_quality"] += 1
        else:
            frames.setdefault(frame[1], frame)  # the first time a hash is seen, as vPDQ's dedupe keeps
    with transaction.atomic(), retro.new_entries(bank):
        existing = set(BankHash.objects.filter(bank=bank, hash_type=HashType.PDQ, value__in=list(frames))
                       .values_list("value", flat=True))
        fresh = [BankHash(bank=bank, hash_type=HashType.PDQ, value=value, label=(label or media_key)[:255],
                          media_key=media_key, frame_seconds=seconds)
                 for value, (seconds, _, _) in frames.items() if value not in existing]
        BankHash.objects.bulk_create(fresh, ignore_conflicts=True, batch_size=BATCH)
        Bank.objects.filter(pk=bank.pk).update(updated_at=timezone.now())
    summary["added"] = len(fresh)
    # Repeated frames within the file (a still scene) count as duplicates too.
    summary["duplicates"] = summary["read"] - summary["error_count"] - summary["low_quality"] - len(fresh)
    matching.invalidate()
    return summary


# Counts ---------------------------------------------------------------------------------------

# Below this many entries a bank is counted while the page waits; above, by a job in the background.
SYNC_COUNT_LIMIT = 200_000


def count_bank(bank_id):
    """Count a bank's entries by type and store the counts with the time counting began."""
    started = timezone.now()
    counts = dict(BankHash.objects.filter(bank_id=bank_id).values("hash_type").annotate(n=Count("pk"))
                  .values_list("hash_type", "n"))
    # update(), not save(): the counts are not a change of the bank, and must not make workers reload it.
    Bank.objects.filter(pk=bank_id).update(entry_counts=counts, counted_at=started)
    return counts


def recount_bank(bank_id):
    kicked(f"bank-count:{bank_id}")
    return count_bank(bank_id)


def current_counts(bank):
    """(counts by type, fresh): stored counts, recounted now for a small bank or in the background."""
    if bank.counted_at and bank.counted_at >= bank.updated_at:
        return bank.entry_counts, True
    ids = BankHash.objects.filter(bank=bank).aggregate(low=Min("pk"), high=Max("pk"))
    if ids["low"] is None or ids["high"] - ids["low"] < SYNC_COUNT_LIMIT:  # at most that many rows
        return count_bank(bank.pk), True
    kick(f"bank-count:{bank.pk}", "detection.banks.recount_bank", bank.pk)
    return bank.entry_counts, False
