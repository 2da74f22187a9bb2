"""Intake: accept subjects, items and user reports from the platform and commit them as rows.

An item's original bytes are written to the evidence store and its row committed before it is
handed to the scan queue; if the hand-off fails the sweep finds the row still `queued`.
"""

from dataclasses import dataclass

from django.conf import settings
from django.db import transaction

from detection.detectors.hashing import digests
from detection.models import Account, AccountLink, Group, Item, ItemKind, Membership, Signal, SignalKind, UserReport
from reviewconsole import storage
from reviewconsole.audit.events import Event
from reviewconsole.audit.recorder import audit
from reviewconsole.queueing import enqueue, kick_after_commit

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
                declared_type="", uploaded_at=None, ip=None, actor_label="api"):
    """Store a file as a new item and queue it for scanning. Returns the committed Item."""
    refuse_nul(account=account_id, group=group_id, external_id=external_id, file=[original_name, declared_type])
    md5, sha256 = digests(data)
    relative = storage.save_original(data)
    try:
        with transaction.atomic():
            account, group = _subjects(account_id, group_id)
            item = Item.objects.create(
                account=account, group=group, kind=kind, external_id=external_id,
                original_name=original_name[:255], declared_type=declared_type[:127], size=len(data),
                storage_path=relative, uploaded_at=uploaded_at, ip=ip, md5=md5, sha256=sha256,
            )
            audit(None, Event.ITEM_RECEIVED, item=item, actor_label=actor_label,
                  details={"sha256": sha256, "size": len(data), "kind": kind})
            request_scan(item.pk)
    except Exception:
        storage.delete_original(relative)  # no row points at it
        raise
    return item


def submit_text(text, *, account_id, group_id=None, external_id="", uploaded_at=None, ip=None, actor_label="api"):
    refuse_nul(text=text, account=account_id, group=group_id, external_id=external_id)
    md5, sha256 = digests(text.encode())
    with transaction.atomic():
        account, group = _subjects(account_id, group_id)
        item = Item.objects.create(
            account=account, group=group, kind=ItemKind.TEXT, external_id=external_id, text=text,
            size=len(text.encode()), uploaded_at=uploaded_at, ip=ip, md5=md5, sha256=sha256,
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
        signal = Signal.objects.create(
            item=item, account=account, group=group, kind=SignalKind.USER_REPORT, detector="user_report",
            label=f"User report: {label}", score=0.5, severity=severity,
            explanation=f"Reported by user {reporter} for '{label}' on {target}"
                        + (f": “{comment[:200]}”" if comment else "."),
            details={"report_id": report.pk, "reason": reason, "reporter": reporter},
            dedupe_key=f"report:{report.pk}",
        )
        audit(None, Event.REPORT_RECEIVED, item=item, actor_label=actor_label, object_type="userreport",
              object_id=str(report.pk), details={"reason": reason, "target": target})
        enqueue("cases.jobs.triage_signals", [signal.pk], queue="triage")
    return report
