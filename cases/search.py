"""Search queries: what one box finds, by kind, for a user.

`search` reads what was typed as everything it could be (a case id, a subject's id or name, an item id,
an MD5, a SHA-256 or a PDQ, an IP address, an email or phone, an NCMEC report id, a legal-request
number) and returns the rows of each kind of result, each bounded and ordered. The permission checks
that decide what a user may open stay with the web layer (cases.web.permissions); the queries here
already leave out what the user's role can never see, so that the bounds are spent on rows they may.
"""

import ipaddress
import re
import unicodedata
from dataclasses import dataclass, field

from django.conf import settings
from django.db import connection, transaction
from django.db.models import BooleanField, IntegerField, Q, Value, When
from django.db.models import Case as SqlCase
from django.db.models.expressions import RawSQL
from django.db.models.functions import Lower

from cases.models import Case, CyberTipReport, LegalRequest
from detection import retro
from detection.models import Account, AccountLink, Group, Item, ItemStatus

LIMIT = 50
MAX_QUERY = 256
NEAR_RADIUS = 31
NEAR_LIMIT = 500
SIMILARITY = 0.5  # trigram similarity at which a name counts as like the one typed (PostgreSQL)
MIN_NAME = 3  # shorter names match too much to rank (and trigrams need three characters)

# Result kinds, in the order the page shows them.
KINDS = ("cases", "accounts", "groups", "items", "reports", "legal")
KIND_LABELS = {"cases": "Cases", "accounts": "Accounts", "groups": "Groups", "items": "Items",
               "reports": "CyberTipline reports", "legal": "Legal requests"}

HEX = re.compile(r"[0-9a-f]+")
CASE_ID = re.compile(r"(?:case\s*)?#\s*(\d{1,18})|case\s+(\d{1,18})", re.IGNORECASE)
ITEM_ID = re.compile(r"item\s*#?\s*(\d{1,18})", re.IGNORECASE)
EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
PHONE = re.compile(r"\+?[\d\s().-]{7,32}")


class BadQuery(ValueError):
    """The query cannot be searched: the message says why, for the person who typed it."""


@dataclass
class Hit:
    obj: object
    why: str  # what matched: "case id", "external id", "name", "PDQ distance 4", ...
    distance: int | None = None


@dataclass
class Results:
    kind: str
    hits: list = field(default_factory=list)
    truncated: bool = False
    notes: list = field(default_factory=list)

    @property
    def label(self):
        return KIND_LABELS[self.kind]


@dataclass
class Search:
    query: str
    understood: list  # what the query was read as: "case id", "md5", "pdq", "name", ...
    results: dict  # kind -> Results, only the kinds searched

    def counts(self):
        return {kind: len(r.hits) for kind, r in self.results.items()}

    @property
    def total(self):
        return sum(len(r.hits) for r in self.results.values())


class NearHits(tuple):
    """(hits, complete) from near_items: hits are [(item id, distance)] nearest first; `complete` is False
    when some were left out, by the limit or because only exact matches were searched (`exact_only`)."""

    def __new__(cls, hits, complete, *, exact_only=False):
        obj = super().__new__(cls, (hits, complete))
        obj.exact_only = exact_only
        return obj

    @property
    def hits(self):
        return self[0]

    @property
    def complete(self):
        return self[1]


def clean_query(q):
    """The query stripped, or BadQuery for one that is too long or holds control characters."""
    q = (q or "").strip()
    if len(q) > MAX_QUERY:
        raise BadQuery(f"The search is too long: at most {MAX_QUERY} characters.")
    if any(unicodedata.category(c) in ("Cc", "Cs") for c in q):
        raise BadQuery("The search contains control characters (such as NUL or a line break): type plain text.")
    return q


def normalise_name(q):
    """A name as compared: case folded, inner spaces collapsed, a leading @ dropped."""
    return " ".join(unicodedata.normalize("NFKC", q).casefold().split()).lstrip("@")


def normalise_phone(q):
    digits = re.sub(r"\D", "", q)
    return [q, digits, "+" + digits] if 7 <= len(digits) <= 15 else []


# Reading the query ------------------------------------------------------------------------------

def understand(q):
    """What the query could be: a dict of reading -> value."""
    readings = {}
    match = CASE_ID.fullmatch(q)
    if match:  # "#123" or "case 123": a case, nothing else
        return {"case id": int(match.group(1) or match.group(2))}
    match = ITEM_ID.fullmatch(q)
    if match:  # "item 123": an item, nothing else
        return {"item id": int(match.group(1))}
    lowered = q.lower()
    if q.isdigit() and len(q) <= 18:
        readings["id"] = int(q)
    try:
        readings["ip"] = str(ipaddress.ip_address(q))
    except ValueError:
        pass
    if EMAIL.fullmatch(q):
        readings["email"] = lowered
    elif PHONE.fullmatch(q) and normalise_phone(q):
        readings["phone"] = normalise_phone(q)
    if HEX.fullmatch(lowered):
        if len(lowered) == 32:
            readings["md5"] = lowered
        elif len(lowered) == 64:
            readings["sha256"] = lowered
            readings["pdq"] = lowered
    if " " not in q:
        readings["external id"] = q
    readings["reference"] = q  # NCMEC report ids and legal-request numbers: exact, indexed or small tables
    identifier = readings.keys() & {"ip", "email", "md5", "sha256"}
    if not identifier and not q.isdigit() and len(normalise_name(q)) >= MIN_NAME:
        readings["name"] = normalise_name(q)
    return readings


# The search -------------------------------------------------------------------------------------

def search(user, q, kind=None, *, near_timeout=None):
    """Search every kind of result the query could find (or only `kind`), for `user`."""
    q = clean_query(q)
    if kind is not None and kind not in KINDS:
        raise BadQuery(f"Unknown kind {kind!r}: choose one of {', '.join(KINDS)}.")
    if not q:
        return Search(q, [], {})
    readings = understand(q)
    wanted = [k for k in KINDS if kind in (None, k)]
    searchers = {"cases": _cases, "accounts": _accounts, "groups": _groups, "items": _items,
                 "reports": _reports, "legal": _legal}
    results = {}
    for name in wanted:
        found = searchers[name](user, readings, near_timeout=near_timeout)
        if found is not None:
            results[name] = found
    return Search(q, list(readings), results)


def _bounded(kind, rows, limit=LIMIT):
    """Results of `kind` from (obj, why[, distance]) tuples already ordered, each object once, cut at limit."""
    out, seen = Results(kind), set()
    for row in rows:
        obj = row[0]
        if obj.pk in seen:
            continue
        seen.add(obj.pk)
        if len(out.hits) == limit:
            out.truncated = True
            break
        out.hits.append(Hit(obj, *row[1:]))
    return out


def _cases(user, readings, **_):
    case_id = readings.get("case id", readings.get("id"))
    if case_id is None:
        return None
    rows = Case.objects.filter(pk=case_id).select_related("queue", "account", "group")
    if not user.has_perm("cases.review_escalated"):
        rows = rows.exclude(queue__senior_only=True)
    return _bounded("cases", [(c, "case id") for c in rows])


def _accounts(user, readings, **_):
    if readings.keys() & {"case id", "item id"}:
        return None
    rows = []
    base = Account.objects.all()
    if "id" in readings:
        rows += [(a, "internal id") for a in base.filter(pk=readings["id"])]
    if "external id" in readings:
        rows += _external_ids(base, readings["external id"])
    if "email" in readings:
        rows += [(a, "email") for a in base.filter(email__iexact=readings["email"]).order_by("pk")[:LIMIT + 1]]
    if "phone" in readings:
        rows += [(a, "phone") for a in base.filter(phone__in=readings["phone"]).order_by("pk")[:LIMIT + 1]]
    if "external id" in readings or "phone" in readings:
        # The platform's phone and device hashes (and any other link kind) shared by accounts.
        values = [readings["external id"]] if "external id" in readings else []
        values += readings.get("phone", [])
        links = (AccountLink.objects.filter(kind__in=AccountLink.Kind.values, value__in=values)
                 .select_related("account").order_by("account_id")[:LIMIT + 1])
        rows += [(link.account, f"{link.get_kind_display().lower()}") for link in links]
    if "ip" in readings and "ip" in AccountLink.Kind.values:
        links = (AccountLink.objects.filter(kind="ip", value=readings["ip"]).select_related("account")
                 .order_by("account_id")[:LIMIT + 1])
        rows += [(link.account, "IP address") for link in links]
    out = _bounded("accounts", rows)
    if "name" in readings:
        _add_names(out, Account, ("screen_name", "display_name"), readings["name"])
    return out


def _groups(user, readings, **_):
    if readings.keys() & {"case id", "item id"}:
        return None
    rows = []
    if "id" in readings:
        rows += [(g, "internal id") for g in Group.objects.filter(pk=readings["id"])]
    if "external id" in readings:
        rows += _external_ids(Group.objects.all(), readings["external id"])
    out = _bounded("groups", rows)
    if "name" in readings:
        _add_names(out, Group, ("name",), readings["name"])
    return out


def _external_ids(rows, value):
    """The subject with this external id, then those whose id starts with it (an id half remembered or
    the platform's prefix for a kind of account), in id order; PostgreSQL reads the prefix from a
    text_pattern_ops index (detection migration 0011)."""
    exact = [(s, "external id") for s in rows.filter(external_id=value)]
    prefix = rows.filter(external_id__startswith=value).exclude(external_id=value).order_by("external_id")
    return exact + [(s, "external id prefix") for s in prefix[:LIMIT + 1]]


def _add_names(out, model, fields, name):
    """Append subjects whose name holds `name` (prefix first, then shorter names) or, on PostgreSQL when none
    does, names similar to it (trigram similarity, best first). PostgreSQL answers
    both from the gin_trgm_ops indexes; SQLite reads the names with a case-insensitive LIKE."""
    room = LIMIT - len(out.hits)
    seen = {hit.obj.pk for hit in out.hits}
    if room <= 0:
        out.truncated = True
        return
    postgres = connection.vendor == "postgresql"
    rows = _names_like(model, fields, name, postgres)
    found = list(rows.exclude(pk__in=seen)[:room + 1])
    out.hits += [Hit(obj, "name") for obj in found[:room]]
    if len(found) > room:
        out.truncated = True
        return
    if postgres and not found:
        # Similarity is for a name misspelt: it is the costly half (common trigrams match many rows), so it
        # runs only when no name holds what was typed.
        with transaction.atomic(), connection.cursor() as cursor:
            # Stricter than pg_trgm's 0.3: names sharing a common word (every "group ...") are not similar.
            cursor.execute(f"SET LOCAL pg_trgm.similarity_threshold = {SIMILARITY}")
            similar = list(_names_similar(model, fields, name).exclude(pk__in=seen)[:room + 1])
        out.hits += [Hit(obj, "similar name") for obj in similar[:room]]
        out.truncated = len(similar) > room


def _like(name):
    return name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _cols(model, fields):
    table = model._meta.db_table
    return [f'"{table}"."{f}"' for f in fields]


def _names_like(model, fields, name, postgres):
    if not postgres:
        return _names_lite(model, fields, name)
    cols = _cols(model, fields)
    # ILIKE, not Django's icontains (UPPER(...) LIKE UPPER(...)): the trigram indexes answer ILIKE.
    where = " OR ".join(f"{c} ILIKE %s" for c in cols)
    first = " OR ".join(f"{c} ILIKE %s" for c in cols)
    return (model.objects.filter(RawSQL(f"({where})", [f"%{_like(name)}%"] * len(cols), output_field=BooleanField()))
            .annotate(is_prefix=RawSQL(f"({first})", [f"{_like(name)}%"] * len(cols), output_field=BooleanField()),
                      shortest=RawSQL(f"LEAST({', '.join(f'NULLIF(length({c}), 0)' for c in cols)})", []))
            .order_by("-is_prefix", "shortest", "pk"))


def _names_similar(model, fields, name):
    cols = _cols(model, fields)
    where = " OR ".join(f"{c} %% %s" for c in cols)
    similarity = f"GREATEST({', '.join(f'similarity({c}, %s)' for c in cols)}, 0)"
    return (model.objects.filter(RawSQL(f"({where})", [name] * len(cols), output_field=BooleanField()))
            .annotate(similar=RawSQL(similarity, [name] * len(cols))).order_by("-similar", "pk"))


def _names_lite(model, fields, name):
    contains, prefix = Q(), Q()
    for f in fields:
        contains |= Q(**{f"{f}_lower__contains": name})
        prefix |= Q(**{f"{f}_lower__startswith": name})
    return (model.objects.annotate(**{f"{f}_lower": Lower(f) for f in fields}).filter(contains)
            .annotate(rank=SqlCase(When(prefix, then=Value(0)), default=Value(1), output_field=IntegerField()))
            .order_by("rank", *fields, "pk"))


def _items(user, readings, *, near_timeout=None):
    if "case id" in readings:
        return None
    rows, notes = [], []
    items = Item.objects.select_related("account", "group")
    if "id" in readings or "item id" in readings:
        rows += [(i, "item id") for i in items.filter(pk=readings.get("item id", readings.get("id")))]
    for reading, label in (("md5", "MD5"), ("sha256", "SHA-256")):
        if reading in readings:
            rows += [(i, label) for i in items.filter(**{reading: readings[reading]}).order_by("-pk")[:LIMIT + 1]]
    if "pdq" in readings:
        near = near_items(bytes.fromhex(readings["pdq"]), radius=NEAR_RADIUS, limit=NEAR_LIMIT, timeout=near_timeout)
        found = items.in_bulk([pk for pk, _ in near.hits[:LIMIT + 1]])
        rows += [(found[pk], f"PDQ distance {d}", d) for pk, d in near.hits[:LIMIT + 1] if pk in found]
        if near.exact_only:
            notes.append("The index of stored pictures did not answer in time: only items whose PDQ is exactly "
                         "this hash were searched (no near copies, no other orientations).")
        elif not near.complete:
            notes.append(f"More than {NEAR_LIMIT} stored items lie within distance {NEAR_RADIUS}: the nearest "
                         "are shown.")
    if "ip" in readings:
        rows += [(i, "IP address") for i in items.filter(ip=readings["ip"]).order_by("-pk")[:LIMIT + 1]]
    out = _bounded("items", rows)
    out.notes += notes
    return out


def _reports(user, readings, **_):
    if readings.keys() & {"case id", "item id"} or not user.has_perm("cases.reveal_evidence") \
            or not user.has_perm("cases.review_case"):
        return None
    rows = CyberTipReport.objects.filter(ncmec_report_id=readings["reference"]).select_related("case__queue")
    if not user.has_perm("cases.review_escalated"):
        rows = rows.exclude(case__queue__senior_only=True)
    return _bounded("reports", [(r, "NCMEC report id") for r in rows.order_by("-pk")[:LIMIT + 1]])


def _legal(user, readings, **_):
    if readings.keys() & {"case id", "item id"} or not user.has_perm("cases.handle_legal_requests"):
        return None
    rows = LegalRequest.objects.filter(reference__iexact=readings["reference"]).select_related("agency")
    return _bounded("legal", [(r, "reference") for r in rows.order_by("-pk")[:LIMIT + 1]])


# PDQ near search through the worker that holds the index -----------------------------------------

def near_items(vectors: bytes, radius=31, limit=500, timeout=None):
    """Stored items with a PDQ (any stored orientation, any video frame) within `radius` of any of the
    32-byte `vectors`: (hits [(item_id, distance)] nearest first, complete).

    Asked of the worker that holds the index of stored items (detection.retro); when none answers within
    `timeout` seconds (settings.SEARCH_NEAR_TIMEOUT), the database is searched for items whose PDQ is
    exactly one of the vectors, and the answer says so: complete False, `exact_only` True.
    """
    vectors = bytes(vectors)
    if not vectors or len(vectors) % 32:
        raise ValueError("vectors must be 32-byte PDQ hashes, joined")
    timeout = settings.SEARCH_NEAR_TIMEOUT if timeout is None else timeout
    answer = retro.ask_near(vectors, radius, limit, timeout)
    if answer is not None:
        return NearHits([(int(pk), int(d)) for pk, d in answer["hits"]], bool(answer["complete"]))
    hexes = [vectors[i:i + 32].hex() for i in range(0, len(vectors), 32)]
    rows = list(Item.objects.filter(pdq__in=hexes, status=ItemStatus.SCANNED).order_by("pk")
                .values_list("pk", flat=True)[:limit])
    return NearHits([(pk, 0) for pk in rows], False, exact_only=True)
