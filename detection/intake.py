"""Intake: accept subjects, items and user reports from the platform and commit them as rows.

An item's original bytes are written to the evidence store and its row committed before it is
handed to the scan queue; if the hand-off fails the sweep finds the row still `queued`. A platform
that hashes at its edge sends hashes instead of bytes: the item is stored `hash_only`, with no file.
There is nothing to decode, so such items are matched in the request, by the same code the scan runs,
and committed `scanned` with their signals in one write; where this process's bank index is not ready
to answer at once (see matching.ready) they are queued and the scan matches them instead.
"""

import logging
import math
import re
from dataclasses import dataclass
from json import dumps

from django.conf import settings
from django.db import connection, transaction
from django.db.models import JSONField
from django.utils import timezone

from detection import matching
from detection.detectors.hashing import DIHEDRAL, digests, pack_orientations, unpack_orientations
from detection.match_signals import match_hashed
from detection.models import (
    Account,
    AccountLink,
    Group,
    Item,
    ItemKind,
    ItemStatus,
    Membership,
    Signal,
    SignalKind,
    UserReport,
)
from detection.reporters import report_weight
from reviewconsole import storage
from reviewconsole.audit.events import Event
from reviewconsole.audit.recorder import audit
from reviewconsole.queueing import enqueue, kick_after_commit

log = logging.getLogger(__name__)

# How serious a user report is taken before anyone has looked at it.
REPORT_REASONS = {
    "csam": ("Child sexual abuse material", 80),
    "child_exploitation": ("Child exploitation", 75),
    "grooming": ("Grooming or enticement of a minor", 70),
    "sextortion": ("Sextortion", 75),
    "trafficking": ("Child sex trafficking", 80),
    "nudity": ("Nudity or sexual content", 40),
    "other": ("Other", 30),
}
# Reports about a child's safety: never silenced by a reporter's mute.
CHILD_SAFETY_REASONS = {"csam", "child_exploitation", "grooming", "sextortion", "trafficking"}


def request_scan(item_id):
    """Once the item's row commits, make sure a scan job (one of SCAN_SLOTS) will pick it up."""
    slot = item_id % settings.SCAN_SLOTS
    kick_after_commit(f"scan:{slot}", "detection.jobs.scan.scan_pending", slot, queue="scan")


@dataclass
class Rejection(Exception):
    field: str
    message: str


def _has_nul(value):
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, str) and "\x00" in node:
            return True
        if isinstance(node, dict):
            stack += list(node) + list(node.values())
        elif isinstance(node, (list, tuple)):
            stack += node
    return False


def refuse_nul(**values):
    """PostgreSQL stores no NUL character in text or JSON: refuse one, naming the field, before the database."""
    for field, value in values.items():
        if _has_nul(value):
            raise Rejection(field, "must not contain NUL characters (\\x00)")


# How far an item travelled, as the platform counts it. No item reaches a trillion chats: a larger
# count is a platform bug, refused rather than stored.
SPREAD_FIELDS = ("forward_count", "forward_chats", "forwarded_many")
MAX_FORWARDS = 10**12


def clean_spread(spread):
    """{field: value} of the spread facts sent with an item (absent or None: not known), or Rejection."""
    clean = {}
    for name, value in (spread or {}).items():
        if name not in SPREAD_FIELDS:
            raise Rejection(name, "unknown spread fact")
        if value is None:
            continue
        if name == "forwarded_many":
            if not isinstance(value, bool):
                raise Rejection(name, "must be true or false")
        elif isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_FORWARDS:
            raise Rejection(name, f"must be a whole number from 0 to {MAX_FORWARDS}")
        clean[name] = value
    return clean


def request_analysis(kind, pk):
    """Once the subject's row commits, score its risk and text surfaces (the sweep covers a lost job)."""
    enqueue("detection.jobs.analysis.analyse_subject", kind, pk, queue="default")


def upsert_account(external_id, fields):
    refuse_nul(external_id=external_id, **fields)
    with transaction.atomic():
        account, created = Account.objects.update_or_create(external_id=external_id, defaults=fields)
        if "facts" in fields:
            sync_links(account)
        request_analysis("account", account.pk)
    return account, created


# A hash longer than this is not a hash; more device hashes than this per account are ignored.
MAX_LINK_CHARS = 128
MAX_DEVICE_HASHES = 20


def link_keys(facts):
    """(kind, value) pairs of the phone hash and device hashes in an account's facts (strings only)."""
    facts = facts if isinstance(facts, dict) else {}

    def usable(value):
        return isinstance(value, str) and 0 < len(value) <= MAX_LINK_CHARS

    keys = []
    if usable(facts.get("phone_hash")):
        keys.append((AccountLink.Kind.PHONE, facts["phone_hash"]))
    devices = facts.get("device_hashes")
    if isinstance(devices, list):
        keys += [(AccountLink.Kind.DEVICE, d) for d in dict.fromkeys(d for d in devices if usable(d))][
            :MAX_DEVICE_HASHES]
    return keys


def sync_links(account):
    wanted = set(link_keys(account.facts))
    have = set(account.links.values_list("kind", "value"))
    for kind, value in have - wanted:
        account.links.filter(kind=kind, value=value).delete()
    AccountLink.objects.bulk_create([AccountLink(account=account, kind=k, value=v) for k, v in wanted - have],
                                    ignore_conflicts=True)


def upsert_group(external_id, fields, *, members=None):
    refuse_nul(external_id=external_id, members=members, **fields)
    with transaction.atomic():
        group, created = Group.objects.update_or_create(external_id=external_id, defaults=fields)
        if members is not None:
            for member_id in members:
                account, _ = Account.objects.get_or_create(external_id=member_id)
                Membership.objects.get_or_create(account=account, group=group)
        request_analysis("group", group.pk)
    return group, created


def _subjects(account_id, group_id):
    account, _ = Account.objects.get_or_create(external_id=account_id)
    group = None
    if group_id:
        group, _ = Group.objects.get_or_create(external_id=group_id)
        Membership.objects.get_or_create(account=account, group=group)
    return account, group


def submit_file(data, *, account_id, group_id=None, kind=ItemKind.IMAGE, external_id="", original_name="",
                declared_type="", uploaded_at=None, ip=None, actor_label="api", spread=None):
    """Store a file as a new item and queue it for scanning. Returns the committed Item."""
    refuse_nul(account=account_id, group=group_id, external_id=external_id, file=[original_name, declared_type])
    spread = clean_spread(spread)
    md5, sha256 = digests(data)
    relative = storage.save_original(data)
    try:
        with transaction.atomic():
            account, group = _subjects(account_id, group_id)
            item = Item.objects.create(
                account=account, group=group, kind=kind, external_id=external_id,
                original_name=original_name[:255], declared_type=declared_type[:127], size=len(data),
                storage_path=relative, uploaded_at=uploaded_at, ip=ip, md5=md5, sha256=sha256, **spread,
            )
            audit(None, Event.ITEM_RECEIVED, item=item, actor_label=actor_label,
                  details={"sha256": sha256, "size": len(data), "kind": kind})
            request_scan(item.pk)
    except Exception:
        storage.delete_original(relative)  # no row points at it
        raise
    return item


# What a hash-only item may carry, and the bounds on it.
HASH_KEYS = ("pdq", "pdq_quality", "pdq_orientations", "md5", "sha256", "frames")
FRAME_KEYS = ("t", "pdq", "quality")
HEX_CHARS = {"pdq": 64, "md5": 32, "sha256": 64}
MAX_FRAMES = 4096
# Far longer than any upload; it only keeps absurd numbers (1e300) out of the stored frame list.
MAX_FRAME_SECONDS = 10**6
_HEX = re.compile(r"[0-9a-fA-F]+")


class InvalidHashes(Exception):
    """The hashes sent in place of a file, refused: every problem by field (`hashes.pdq`, `hashes.frames[3].t`)."""

    def __init__(self, fields):
        super().__init__("; ".join(f"{name}: {' '.join(messages)}" for name, messages in fields.items()))
        self.fields = fields


def _hex_problem(value, chars):
    if not isinstance(value, str):
        return f"must be a string of {chars} hex digits"
    if len(value) != chars:
        return f"must be {chars} hex digits, not {len(value)} characters"
    if not _HEX.fullmatch(value):
        return f"must be {chars} hex digits (0-9, a-f): it holds other characters"
    return None


def _whole(value, low, high):
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _frames_problem(frames):
    """(field suffix, message) of the first bad frame, or None. One problem is enough: a list of 4096
    broken frames should not come back as 4096 messages."""
    if not isinstance(frames, list):
        return "", "must be a list of frames: [{\"t\": seconds, \"pdq\": hex, \"quality\": 0-100}, ...]"
    if not frames:
        return "", "must hold at least one frame (or leave `frames` out)"
    if len(frames) > MAX_FRAMES:
        return "", f"at most {MAX_FRAMES} frames, not {len(frames)}"
    previous = None
    for n, frame in enumerate(frames):
        at = f"[{n}]"
        if not isinstance(frame, dict):
            return at, "must be an object with t, pdq and quality"
        unknown = [k for k in frame if k not in FRAME_KEYS]
        if unknown:
            return at, f"unknown key {unknown[0][:40]!r}; a frame holds t, pdq and quality"
        missing = [k for k in FRAME_KEYS if frame.get(k) is None]
        if missing:
            return f"{at}.{missing[0]}", "required"
        t = frame["t"]
        if isinstance(t, bool) or not isinstance(t, (int, float)) or (isinstance(t, float) and not math.isfinite(t)):
            return f"{at}.t", "must be a number of seconds"
        if t < 0:
            return f"{at}.t", "must not be negative"
        if t > MAX_FRAME_SECONDS:
            return f"{at}.t", f"at most {MAX_FRAME_SECONDS} seconds"
        if previous is not None and t <= previous:
            return f"{at}.t", f"must be later than the frame before ({previous} s): frames go in time order"
        previous = t
        problem = _hex_problem(frame["pdq"], HEX_CHARS["pdq"])
        if problem:
            return f"{at}.pdq", problem
        if not _whole(frame["quality"], 0, 100):
            return f"{at}.quality", "must be a whole number from 0 to 100"
    return None


def clean_hashes(hashes, kind):
    """The hashes a platform sent in place of a file, checked and in lower-case hex, or InvalidHashes.

    Returns {"md5", "sha256", "pdq", "pdq_quality", "pdq_orientations" (hex list), "frames"}; absent
    hashes are "" (None for the quality, [] for the lists). A null value counts as left out.
    """
    if not isinstance(hashes, dict):
        raise InvalidHashes({"hashes": ["must be an object: {\"pdq\", \"pdq_quality\", \"md5\", \"sha256\", "
                                        "\"pdq_orientations\", \"frames\"}"]})
    errors = {}
    for key in hashes:
        if key not in HASH_KEYS:
            errors[f"hashes.{key[:40]}"] = [f"unknown key; a hash-only item holds {', '.join(HASH_KEYS)}"]
    sent = {k: v for k, v in hashes.items() if k in HASH_KEYS and v is not None}
    if not ({"pdq", "md5", "sha256", "frames"} & set(sent)):
        errors.setdefault("hashes", []).append("at least one hash is required: pdq, md5, sha256 or frames")
    for key, chars in HEX_CHARS.items():
        problem = _hex_problem(sent[key], chars) if key in sent else None
        if problem:
            errors[f"hashes.{key}"] = [problem]
    if "pdq" in sent and "pdq_quality" not in sent:
        errors["hashes.pdq_quality"] = ["required with pdq (the quality the PDQ hasher reported, 0 to 100)"]
    elif "pdq_quality" in sent and "pdq" not in sent:
        errors["hashes.pdq_quality"] = ["only with pdq"]
    elif "pdq_quality" in sent and not _whole(sent["pdq_quality"], 0, 100):
        errors["hashes.pdq_quality"] = ["must be a whole number from 0 to 100"]
    orientations = sent.get("pdq_orientations")
    if orientations is not None:
        problem = None
        if "pdq" not in sent:
            problem = "only with pdq"
        elif not isinstance(orientations, list) or len(orientations) != len(DIHEDRAL):
            problem = (f"must be a list of the {len(DIHEDRAL)} dihedral PDQ hashes, the original first: "
                       + ", ".join(DIHEDRAL))
        else:
            bad = next(((n, p) for n, v in enumerate(orientations) if (p := _hex_problem(v, 64))), None)
            if bad:
                problem = f"hash {bad[0]} {bad[1]}"
            elif isinstance(sent["pdq"], str) and orientations[0].lower() != sent["pdq"].lower():
                problem = "the first (the original orientation) must equal pdq"
        if problem:
            errors["hashes.pdq_orientations"] = [problem]
    if "frames" in sent:
        if kind != ItemKind.VIDEO:
            errors["hashes.frames"] = ['only for videos: send "kind": "video" with frames']
        else:
            found = _frames_problem(sent["frames"])
            if found:
                errors[f"hashes.frames{found[0]}"] = [found[1]]
    if errors:
        raise InvalidHashes(errors)
    return {
        "md5": sent.get("md5", "").lower(), "sha256": sent.get("sha256", "").lower(),
        "pdq": sent.get("pdq", "").lower(), "pdq_quality": sent.get("pdq_quality"),
        "pdq_orientations": [v.lower() for v in orientations or []],
        "frames": [{"t": float(f["t"]), "pdq": f["pdq"].lower(), "quality": f["quality"]}
                   for f in sent.get("frames", [])],
    }


def submit_hashes(hashes, *, account_id, group_id=None, kind=ItemKind.IMAGE, external_id="", uploaded_at=None,
                  ip=None, actor_label="api", spread=None):
    """Store an image or video the platform hashed at its edge as a hash-only item, matched against the
    banks now (or queued for the scan, see _match_now). Raises InvalidHashes or Rejection, storing nothing."""
    if kind not in (ItemKind.IMAGE, ItemKind.VIDEO):
        raise Rejection("kind", "hashes describe an image or a video: kind must be image or video")
    refuse_nul(account=account_id, group=group_id, external_id=external_id)
    spread = clean_spread(spread)
    clean = clean_hashes(hashes, kind)
    orientations = _packed(clean)
    fields = {"md5": clean["md5"], "sha256": clean["sha256"], "pdq": clean["pdq"], "pdq_quality": clean["pdq_quality"],
              "pdq_orientations": orientations, "frame_hashes": clean["frames"]}
    with transaction.atomic():
        account, group = _subjects(account_id, group_id)
        matched = _match_now([fields])
        item = Item.objects.create(
            account=account, group=group, kind=kind, external_id=external_id, hash_only=True,
            uploaded_at=uploaded_at, ip=ip, **fields, **spread, **_scanned_now(matched),
        )
        audit(None, Event.ITEM_RECEIVED, item=item, actor_label=actor_label,
              details={"kind": kind, "hash_only": True, "sha256": clean["sha256"], "md5": clean["md5"],
                       "pdq": clean["pdq"], "orientations": len(clean["pdq_orientations"]),
                       "frames": len(clean["frames"]), "matched_at_intake": matched is not None})
        if matched is None:
            request_scan(item.pk)
        else:
            _store_signals(matched, [(0, item)])
    return item


def _match_now(rows):
    """Match hash-only items (rows of hash fields) now, when this process's bank index can answer without
    a long cold load: a BatchMatches keyed by position, or None to leave them to the scan.

    The scan is the net under this: should matching fail for any reason (the database, a bank that no
    longer parses), the items are stored queued and a worker matches them the same way.
    """
    if not settings.INTAKE_MATCH or not rows:
        return None
    try:
        # A savepoint: a database error here must not spoil the transaction the items are written in.
        with transaction.atomic():
            if not matching.ready():
                return None
            return match_hashed([(_Probe(n, row), row) for n, row in enumerate(rows)], snapshot=False)
    except Exception:
        log.exception("intake: matching %d hash-only item(s) failed; they are queued for the scan", len(rows))
        return None


class _Probe:
    """What matching reads of an item before its row exists: hashes, and its position as the key."""

    __slots__ = ("md5", "pdq_variants", "pk", "sha256")

    def __init__(self, key, row):
        self.pk, self.md5, self.sha256 = key, row["md5"], row["sha256"]
        self.pdq_variants = unpack_orientations(row["pdq_orientations"]) if row["pdq_orientations"] else ()


def _scanned_now(matched):
    """The status fields of items matched at intake (none for those left queued)."""
    return {} if matched is None else {"status": ItemStatus.SCANNED, "scanned_at": timezone.now()}


def _store_signals(matched, items):
    """Write the match signals of items matched at intake ([(key, saved Item)]) and have them triaged once
    they commit (cases.jobs.triage_pending)."""
    signals = []
    for key, item in items:
        if matched.any(key):
            signals += matched.signals(item, key=key)
    created = Signal.objects.bulk_create(signals)
    if created:
        # One run triages what every request meanwhile committed: cases decided together, not a few a request.
        kick_after_commit("triage-pending", "cases.jobs.triage_pending", queue="triage",
                          delay=settings.TRIAGE_GATHER_SECONDS, job_timeout=600)
    return created


# A platform at scale sends hashes in batches: one request, one transaction and one audit row for up to
# this many items, in place of as many round trips.
MAX_BATCH_ITEMS = 1000


@dataclass(frozen=True)
class HashItem:
    """One item of a batch of hash-only items, its hashes as sent (submit_hash_batch checks them)."""

    account_id: str
    hashes: object
    group_id: str | None = None
    kind: str = ItemKind.IMAGE
    external_id: str = ""
    uploaded_at: object = None
    ip: str | None = None
    spread: dict | None = None  # forward_count, forward_chats, forwarded_many (see clean_spread)


@dataclass(frozen=True)
class Received:
    id: int
    status: str
    duplicate: bool = False


def _packed(clean):
    if not clean["pdq"]:
        return None
    return pack_orientations(list(zip(DIHEDRAL, clean["pdq_orientations"] or [clean["pdq"]], strict=False)))


def _checked(entry):
    if entry.kind not in (ItemKind.IMAGE, ItemKind.VIDEO):
        raise Rejection("kind", "hashes describe an image or a video: kind must be image or video")
    refuse_nul(account=entry.account_id, group=entry.group_id, external_id=entry.external_id)
    if not entry.account_id:
        raise Rejection("account", "required")
    clean = clean_hashes(entry.hashes, entry.kind)
    return {**clean, "spread": clean_spread(entry.spread)}


def insert_rows(model, rows, *, ignore_conflicts=False, returning=("pk",)):
    """Insert `rows` (dicts of field attname to value; every other field takes its default) and return
    the `returning` fields of the new rows as tuples (with ignore_conflicts, only of those inserted, and
    on SQLite none: bulk_create learns no ids there).

    On PostgreSQL it is one INSERT ... SELECT FROM jsonb_to_recordset(): the rows travel as one JSON
    document (encoded by the json module's C code) and the defaults are given once. bulk_create's
    statement for a thousand rows of a wide table costs ten times more to build and send than the
    database takes to store it, and a bound array a column is still quoted value by value in Python;
    SQLite is left to bulk_create.
    """
    if not rows:
        return []
    if connection.vendor != "postgresql":
        created = model.objects.bulk_create([model(**row) for row in rows], ignore_conflicts=ignore_conflicts)
        return [tuple(getattr(obj, name) for name in returning) for obj in created if obj.pk is not None]
    template, varying = model(), list(rows[0])
    quote = connection.ops.quote_name
    columns, picks, params, record, convert = [], [], [], [], {}
    for field in model._meta.concrete_fields:
        if field.primary_key:
            continue
        cast = field.db_type(connection)
        columns.append(quote(field.column))
        if field.attname not in varying:
            picks.append(f"%s::{cast}")
            params.append(field.get_db_prep_save(field.pre_save(template, add=True), connection))
            continue
        key = f"c{len(record)}"
        if isinstance(field, JSONField):
            record.append(f"{key} jsonb")
            picks.append(f"u.{key}")
        elif cast == "bytea":  # JSON has no bytes: sent as hex
            record.append(f"{key} text")
            picks.append(f"decode(u.{key}, 'hex')")
            convert[field.attname] = _hex_or_none
        else:
            record.append(f"{key} {cast}")
            picks.append(f"u.{key}")
            if field.get_internal_type() in ("DateTimeField", "DateField"):
                convert[field.attname] = _iso_or_none
    names = [f.attname for f in model._meta.concrete_fields if not f.primary_key and f.attname in varying]
    document = dumps([{f"c{n}": (convert[name](row[name]) if name in convert else row[name])
                       for n, name in enumerate(names)} for row in rows], separators=(",", ":"))
    sql = (f"INSERT INTO {quote(model._meta.db_table)} ({', '.join(columns)}) SELECT {', '.join(picks)} "
           f"FROM jsonb_to_recordset(%s::jsonb) AS u({', '.join(record)})"
           + (" ON CONFLICT DO NOTHING" if ignore_conflicts else "") + " RETURNING "
           + ", ".join(quote((model._meta.pk if name == "pk" else model._meta.get_field(name)).column)
                       for name in returning))
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, document])
        return cursor.fetchall()


def _hex_or_none(value):
    return None if value is None else bytes(value).hex()


def _iso_or_none(value):
    return None if value is None else value.isoformat()


def _subject_ids(model, external_ids):
    """({external_id: pk}, pks of the subjects created now), creating those that do not exist yet in one
    statement. Sorted, so that two batches inserting the same new subjects lock them in the same order."""
    wanted = sorted(external_ids)
    found = {}
    for start in range(0, len(wanted), 500):  # well under SQLite's bound-parameter limit
        found.update(model.objects.filter(external_id__in=wanted[start:start + 500]).values_list("external_id", "pk"))
    missing = [e for e in wanted if e not in found]
    created = dict(insert_rows(model, [{"external_id": e} for e in missing], ignore_conflicts=True,
                               returning=("external_id", "pk")))
    found.update(created)
    late = [e for e in missing if e not in created]  # another batch's (or, on SQLite, not returned)
    for start in range(0, len(late), 500):
        found.update(model.objects.filter(external_id__in=late[start:start + 500]).values_list("external_id", "pk"))
    return found, set(created.values())


def _already_received(pairs):
    """{(account pk, external_id): (pk, status)} of the items earlier submissions created (the first of each)."""
    found = {}
    if not pairs:
        return found
    rows = Item.objects.filter(account_id__in={a for a, _ in pairs}, external_id__in={e for _, e in pairs})
    for pk, account_id, external_id, status in rows.order_by("pk").values_list("pk", "account_id", "external_id",
                                                                               "status"):
        found.setdefault((account_id, external_id), (pk, status))
    return found


def submit_hash_batch(entries, *, actor_label="api"):
    """Store a batch of hash-only items (HashItem, at most MAX_BATCH_ITEMS), matched now (or queued for
    the scan where they cannot be, see _match_now).

    Each entry is checked on its own: one with bad hashes or fields is refused with its reasons and the
    rest go on. A retried entry (same account and external_id as an item already received, or as an
    earlier entry of this batch) is answered with that item. Accounts, groups, memberships and items are
    written with a statement each, and the batch with one audit row listing its items. Returns, in the
    order of `entries`, a Received or the Rejection/InvalidHashes that refused the entry.
    """
    if len(entries) > MAX_BATCH_ITEMS:
        raise Rejection("items", f"at most {MAX_BATCH_ITEMS} items a batch, not {len(entries)}")
    results, ready = [None] * len(entries), []
    for n, entry in enumerate(entries):
        try:
            ready.append((n, entry, _checked(entry)))
        except (Rejection, InvalidHashes) as exc:
            results[n] = exc
    if not ready:
        return results
    with transaction.atomic():
        accounts, new_accounts = _subject_ids(Account, {entry.account_id for _, entry, _ in ready})
        groups, _ = _subject_ids(Group, {entry.group_id for _, entry, _ in ready if entry.group_id})
        insert_rows(Membership, [{"account_id": a, "group_id": g} for a, g in sorted(
            {(accounts[e.account_id], groups[e.group_id]) for _, e, _ in ready if e.group_id})],
            ignore_conflicts=True)
        # An account created by this very batch has sent nothing before.
        earlier = _already_received({(accounts[e.account_id], e.external_id) for _, e, _ in ready
                                     if e.external_id and accounts[e.account_id] not in new_accounts})
        new, first_of, repeats = [], {}, []
        for n, entry, clean in ready:
            account_id = accounts[entry.account_id]
            key = (account_id, entry.external_id) if entry.external_id else None
            if key in earlier:
                results[n] = Received(*earlier[key], duplicate=True)
            elif key in first_of:
                repeats.append((n, first_of[key]))  # answered with the item the first one creates
            else:
                if key:
                    first_of[key] = n
                new.append((n, {
                    "account_id": account_id, "group_id": groups[entry.group_id] if entry.group_id else None,
                    "kind": entry.kind, "external_id": entry.external_id, "hash_only": True,
                    "uploaded_at": entry.uploaded_at, "ip": entry.ip, "md5": clean["md5"], "sha256": clean["sha256"],
                    "pdq": clean["pdq"], "pdq_quality": clean["pdq_quality"], "pdq_orientations": _packed(clean),
                    "frame_hashes": clean["frames"],
                    **{name: clean["spread"].get(name) for name in SPREAD_FIELDS}}))
        matched = _match_now([row for _, row in new])
        status = _scanned_now(matched)
        for _, row in new:
            row.update(status)
        # Ids come from the sequence in the order the rows are inserted: ascending is the entries' order.
        ids = sorted(pk for (pk,) in insert_rows(Item, [row for _, row in new]))
        for (n, _), pk in zip(new, ids, strict=True):
            results[n] = Received(pk, status.get("status", ItemStatus.QUEUED))
        for n, first in repeats:
            results[n] = Received(results[first].id, results[first].status, duplicate=True)
        if ids:
            audit(None, Event.ITEM_RECEIVED, actor_label=actor_label, object_type="item_batch",
                  object_id=f"{ids[0]}-{ids[-1]}",
                  details={"hash_only": True, "items": ids, "count": len(ids),
                           "videos": sum(row["kind"] == ItemKind.VIDEO for _, row in new),
                           "duplicates": sum(isinstance(r, Received) and r.duplicate for r in results),
                           "matched_at_intake": matched is not None})
            if matched is not None:
                # Only the items that matched are made into model instances: most match nothing.
                saved = enumerate(zip((row for _, row in new), ids, strict=True))
                _store_signals(matched, [(k, Item(pk=pk, **row)) for k, (row, pk) in saved if matched.any(k)])
            else:
                # One kick per scan slot the batch touches (at most SCAN_SLOTS): every worker can take a
                # share of a large batch, and the batch costs a handful of Redis calls, not one an item.
                for slot in sorted({pk % settings.SCAN_SLOTS for pk in ids}):
                    kick_after_commit(f"scan:{slot}", "detection.jobs.scan.scan_pending", slot, queue="scan")
    return results


def submit_text(text, *, account_id, group_id=None, external_id="", uploaded_at=None, ip=None, actor_label="api",
                spread=None):
    refuse_nul(text=text, account=account_id, group=group_id, external_id=external_id)
    spread = clean_spread(spread)
    md5, sha256 = digests(text.encode())
    with transaction.atomic():
        account, group = _subjects(account_id, group_id)
        item = Item.objects.create(
            account=account, group=group, kind=ItemKind.TEXT, external_id=external_id, text=text,
            size=len(text.encode()), uploaded_at=uploaded_at, ip=ip, md5=md5, sha256=sha256, **spread,
        )
        audit(None, Event.ITEM_RECEIVED, item=item, actor_label=actor_label, details={"kind": "text"})
        request_scan(item.pk)
    return item


def submit_report(*, reporter, reason, comment="", account_id=None, group_id=None, item_id=None,
                  external_id="", actor_label="api"):
    """Record a user report and the signal it raises on the reported subject."""
    if reason not in REPORT_REASONS:
        raise Rejection("reason", f"unknown reason; one of: {', '.join(REPORT_REASONS)}")
    refuse_nul(reporter=reporter, comment=comment, account=account_id, group=group_id, external_id=external_id)
    with transaction.atomic():
        item = account = group = None
        if item_id is not None:
            item = Item.objects.select_related("account").filter(pk=item_id).first()
            if item is None:
                raise Rejection("item", "no such item")
            account = item.account
        elif account_id:
            account, _ = Account.objects.get_or_create(external_id=account_id)
        elif group_id:
            group, _ = Group.objects.get_or_create(external_id=group_id)
        else:
            raise Rejection("target", "name an account, a group or an item")
        report = UserReport.objects.create(
            reporter=reporter, reason=reason, comment=comment, account=account, group=group, item=item,
            external_id=external_id,
        )
        label, severity = REPORT_REASONS[reason]
        target = f"item {item.pk}" if item else str(account or group)
        weight = report_weight(reporter, child_safety=reason in CHILD_SAFETY_REASONS)
        # A muted reporter's report is kept and shown but opens no case by itself: with no open case on
        # its subject it is born triaged (so neither triage nor the sweep picks it up); with one, it joins it.
        # Triage keys its cases by subject (account, else group): asked the same way, through the subject's
        # cases (related_name "cases", the app above), not through signals that may sit on another's case.
        alone = not weight.opens_case and not (account or group).cases.filter(closed_at__isnull=True).exists()
        signal = Signal.objects.create(
            item=item, account=account, group=group, kind=SignalKind.USER_REPORT, detector="user_report",
            label=f"User report: {label}", score=min(1.0, 0.5 * weight.value), severity=severity,
            explanation=f"Reported by user {reporter} for '{label}' on {target}"
                        + (f": “{comment[:200]}”" if comment else ".") + f" ({weight.explanation}.)",
            details={"report_id": report.pk, "reason": reason, "reporter": reporter, "weight": weight.value,
                     "standing": weight.standing, "muted": weight.muted},
            dedupe_key=f"report:{report.pk}", triaged_at=timezone.now() if alone else None,
        )
        audit(None, Event.REPORT_RECEIVED, item=item, actor_label=actor_label, object_type="userreport",
              object_id=str(report.pk), details={"reason": reason, "target": target, "weight": weight.value,
                                                 "standing": weight.standing})
        if not alone:
            enqueue("cases.jobs.triage_signals", [signal.pk], queue="triage")
    return report
