"""Import from NCMEC's hash-sharing API into a bank, incrementally, through python-threatexchange."""

import logging
from collections import Counter
from datetime import UTC, datetime
from xml.etree.ElementTree import ParseError

import requests
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from threatexchange.exchanges.clients.ncmec import hash_api
from threatexchange.exchanges.impl import ncmec_api
from urllib3.exceptions import ReadTimeoutError
from urllib3.util.retry import Retry

from detection import matching, retro
from detection.models import Bank, BankHash, BankKind, HashExchange, HashType, normalise_hash
from reviewconsole import outbound

log = logging.getLogger(__name__)

# NCMEC's fingerprint names -> ours. Exact digests identify a file whatever it holds; PDQ is an
# image hash (a video's frames need vPDQ, which NCMEC does not share as PDQ).
FINGERPRINTS = {"md5": HashType.MD5, "sha256": HashType.SHA256, "pdq": HashType.PDQ}
IMAGE_ONLY = {HashType.PDQ}
LABEL_PREFIX = "ncmec:"


class ExchangeError(Exception):
    """The fetch stopped; the message says why. The checkpoint stays at the last page stored."""


class NCMECClient(hash_api.NCMECHashAPI):
    """The library's client, pointed at a configurable address with our timeout and retries."""

    def __init__(self, username, password, base_url, *, timeout=60, retries=2):
        super().__init__(username, password, hash_api.NCMECEnvironment.Industry)
        self._base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.retries = retries

    def _get_session(self):
        # Through the SSRF guard (reviewconsole.outbound), for every URL the library asks for: each
        # address is checked, connected to as checked, and redirects are followed only through it.
        session = outbound.session(timeout=self.timeout, max_retries=Retry(
            total=self.retries, status_forcelist=[429, 500, 502, 503, 504], allowed_methods=["GET"],
            backoff_factor=0.2))
        session.auth = (self.username, self.password)
        return session


class _Exchange(ncmec_api.NCMECSignalExchangeAPI):
    """The library's fetch strategy (time windows that shrink and grow, resumable paging)."""

    def __init__(self, client):
        super().__init__(ncmec_api.NCMECCollabConfig(name="ncmec", environment=hash_api.NCMECEnvironment.Industry),
                         client.username, client.password)
        self.client = client

    def get_client(self, environment):
        return self.client


def default_client():
    if not (settings.NCMEC_HASH_API_USER and settings.NCMEC_HASH_API_PASSWORD):
        raise ExchangeError("NCMEC_HASH_API_USER and NCMEC_HASH_API_PASSWORD are not set")
    return NCMECClient(settings.NCMEC_HASH_API_USER, settings.NCMEC_HASH_API_PASSWORD,
                       settings.NCMEC_HASH_API_URL, timeout=settings.NCMEC_HASH_API_TIMEOUT)


def load_checkpoint(data):
    if not data:
        return None
    paging = None
    if data.get("paging_url"):
        paging = ncmec_api._NCMECPagingInfo(paging_url=data["paging_url"], paging_end_ts=data["paging_end_ts"],
                                            paging_url_ts=data["paging_url_ts"])
    return ncmec_api.NCMECCheckpoint(get_entries_max_ts=data["max_ts"], paging_info=paging)


def dump_checkpoint(checkpoint):
    paging = checkpoint.paging_info
    return {
        "max_ts": checkpoint.get_entries_max_ts,
        "paging_url": paging.paging_url if paging else "",
        "paging_end_ts": paging.paging_end_ts if paging else None,
        "paging_url_ts": paging.paging_url_ts if paging else None,
    }


def parse_since(text):
    """A start time: seconds since 1970, or an ISO date or date-time (UTC unless it says)."""
    text = (text or "").strip()
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ExchangeError(f"--since: not a date or a timestamp: {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


def ncmec_bank(name):
    bank, _ = Bank.objects.get_or_create(name=name, defaults={
        "kind": BankKind.KNOWN, "source": "ncmec", "description": "NCMEC hash sharing"})
    return bank


def fetch(bank_name=None, *, since=None, client=None, progress=None):
    """Fetch what changed since the stored checkpoint into the bank; returns the counts.

    Each page of entries and the checkpoint after it are stored in one transaction, so an
    interrupted run leaves whole pages and a checkpoint that matches them, and the next run
    continues from there.
    """
    bank = ncmec_bank(bank_name or settings.NCMEC_HASH_BANK)
    exchange, _ = HashExchange.objects.get_or_create(bank=bank, defaults={"api": "ncmec"})
    client = client or default_client()
    checkpoint = ncmec_api.NCMECCheckpoint(get_entries_max_ts=since) if since is not None \
        else load_checkpoint(exchange.checkpoint)
    counts = Counter()
    try:
        for delta in _Exchange(client).fetch_iter([], checkpoint):
            with transaction.atomic(), retro.new_entries(bank):
                apply_updates(bank, delta.updates.values(), counts)
                HashExchange.objects.filter(pk=exchange.pk).update(checkpoint=dump_checkpoint(delta.checkpoint))
                counts["pages"] += 1
            if progress:
                progress(len(delta.updates))
    except Exception as exc:
        message = describe_failure(exc)
        HashExchange.objects.filter(pk=exchange.pk).update(last_error=message, last_error_at=timezone.now())
        log.warning("NCMEC fetch into %s stopped: %s", bank.name, message)
        raise ExchangeError(message) from exc
    finally:
        if counts["added"] or counts["removed"]:
            Bank.objects.filter(pk=bank.pk).update(updated_at=timezone.now())
            matching.invalidate()
    exchange.refresh_from_db()
    totals = Counter(exchange.totals)
    totals.update({k: v for k, v in counts.items() if k != "pages"})
    HashExchange.objects.filter(pk=exchange.pk).update(fetched_at=timezone.now(), last_error="", totals=dict(totals))
    return {"bank": bank.name, **counts}


def describe_failure(exc):
    if isinstance(exc, outbound.Refused):
        return f"the NCMEC address is not allowed ({exc}); check NCMEC_HASH_API_URL"
    if isinstance(exc, requests.TooManyRedirects):
        return "NCMEC redirected too many times"
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        status = exc.response.status_code
        if status in (401, 403):
            return f"NCMEC refused the credentials (HTTP {status}); check NCMEC_HASH_API_USER and _PASSWORD"
        return f"NCMEC answered HTTP {status}"
    if isinstance(exc, requests.exceptions.RetryError):
        return "NCMEC kept answering with a server error (HTTP 5xx) after retries"
    # After its retries urllib3 reports a read timeout as a connection error with the timeout inside.
    reason = getattr(exc.args[0], "reason", None) if isinstance(exc, requests.ConnectionError) and exc.args else None
    if isinstance(exc, requests.Timeout) or isinstance(reason, ReadTimeoutError):
        return "NCMEC did not answer in time"
    if isinstance(exc, requests.ConnectionError):
        return f"could not reach NCMEC at {settings.NCMEC_HASH_API_URL}"
    if isinstance(exc, ParseError):
        return f"NCMEC sent malformed XML: {exc}"
    return f"NCMEC sent a response that could not be read: {str(exc)[:300]}"


def entry_key(update):
    return f"{LABEL_PREFIX}{update.member_id}-{update.id}"


def apply_updates(bank, updates, counts):
    """Apply one page of entry updates: an entry's hashes become those of its latest version
    (none for a deleted entry). An entry seen again unchanged changes nothing."""
    for update in updates:
        key = entry_key(update)
        counts["deleted_entries" if update.deleted else "entries"] += 1
        wanted = set() if update.deleted else _fingerprints(update, counts)
        counts["removed"] += _release(bank, key, keep=wanted)
        for hash_type, value in sorted(wanted):
            counts["added"] += _claim(bank, key, hash_type, value)


def _fingerprints(update, counts):
    found = set()
    for name, raw in update.fingerprints.items():
        hash_type = FINGERPRINTS.get(name.lower())
        if hash_type is None or (hash_type in IMAGE_ONLY and update.entry_type != hash_api.NCMECEntryType.image):
            counts[f"skipped_{update.entry_type.value}_{name.lower()}"] += 1
            continue
        try:
            found.add((hash_type, normalise_hash(raw, hash_type)))
        except ValueError:
            counts["invalid"] += 1
    return found


def _claim(bank, key, hash_type, value):
    """Store one fingerprint for an entry; a hash several entries share is one row naming them all."""
    row = BankHash.objects.filter(bank=bank, hash_type=hash_type, value=value).first()
    if row is None:
        BankHash.objects.create(bank=bank, hash_type=hash_type, value=value, label=key)
        return 1
    owners = row.label.split()
    if key not in owners and len(row.label) + len(key) + 1 <= 255:
        BankHash.objects.filter(pk=row.pk).update(label=" ".join([*owners, key]))
    return 0


def _release(bank, key, keep=()):
    """Drop an entry's claim on its hashes but `keep`; a hash no other entry names is deleted.
    Returns the number of rows deleted.

    Rows are found by the entry first named on them (an index range); a later owner's claim is
    dropped when the first owner goes, so a shared hash stays as long as any of its entries.
    """
    rows = BankHash.objects.filter(bank=bank, label__gte=key, label__lt=key + "!")
    removed = 0
    for row in rows:
        owners = row.label.split()
        if not owners or owners[0] != key or (row.hash_type, row.value) in keep:
            continue
        rest = [owner for owner in owners if owner != key]
        if rest:
            BankHash.objects.filter(pk=row.pk).update(label=" ".join(rest))
        else:
            row.delete()
            removed += 1
    return removed



def fetch_job():
    """The periodic fetch (reviewconsole.cron): one at a time; a failure is recorded on the exchange row."""
    import django_rq  # noqa: PLC0415

    lock = django_rq.get_connection("default").lock("detection:ncmec-fetch", timeout=6 * 3600)
    if not lock.acquire(blocking=False):
        return {"skipped": "a fetch is already running"}
    try:
        return fetch()
    except ExchangeError as exc:
        return {"error": str(exc)}
    finally:
        lock.release()
