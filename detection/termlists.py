"""Text-term lists: load them from CSV, hold them compiled per worker, and turn hits into signals."""

import csv
import hashlib
import io
import logging
import time
from dataclasses import dataclass, field

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Max

from detection.detectors import text
from detection.models import Signal, SignalKind, TermCategory, TermMatch, TextTerm

log = logging.getLogger(__name__)
TERMS_CHECK_SECONDS = 2.0
DETECTOR = "text_terms"
# How grave a hit in each category is (0..100) before its weight; settings.TEXT_CATEGORY_SEVERITY overrides.
CATEGORY_SEVERITY = {
    TermCategory.SEXTORTION: 85,
    TermCategory.TRADE: 80,
    TermCategory.SOLICITATION: 75,
    TermCategory.GROOMING: 65,
    TermCategory.AGE: 40,
    TermCategory.OFF_PLATFORM: 35,
    TermCategory.OTHER: 40,
}
ACCOUNT_FIELDS = [("display_name", "Display name"), ("screen_name", "Screen name"), ("bio", "Bio")]
GROUP_FIELDS = [("name", "Group name"), ("description", "Description")]
TRICKS = {
    "bidi_override": "right-to-left override characters",
    "invisible": "invisible characters",
    "lookalikes": "lookalike letters from other alphabets",
    "leetspeak": "digits for letters",
    "spacing": "spaced-out letters",
    "stretching": "stretched letters",
}


# ---- the cached, compiled list --------------------------------------------------------------


class TermCache:
    """The enabled terms, compiled; reloaded when the table changes (checked every few seconds)."""

    def __init__(self):
        self.stamp = None
        self.checked_at = 0.0
        self.terms = []

    def _current_stamp(self):
        agg = TextTerm.objects.aggregate(n=Count("id"), updated=Max("updated_at"), top=Max("id"))
        return agg["n"], agg["updated"], agg["top"]

    def get(self, force=False):
        now = time.monotonic()
        if force or self.stamp is None or now - self.checked_at >= TERMS_CHECK_SECONDS:
            self.checked_at = now
            stamp = self._current_stamp()
            if force or stamp != self.stamp:
                rows = TextTerm.objects.filter(enabled=True).order_by("pk")
                self.terms = text.compile_terms(
                    text.Term(term=r.term, category=r.category, match=r.match, weight=r.weight, id=r.pk)
                    for r in rows)
                self.stamp = stamp
        return self.terms


_cache = TermCache()


def active_terms(force=False):
    return _cache.get(force=force)


def forget_terms():
    """Drop the cached list (tests, and after a bulk load in this process)."""
    _cache.stamp = None


# ---- hits -> signals ------------------------------------------------------------------------


def severity_for(categories):
    table = {**CATEGORY_SEVERITY, **getattr(settings, "TEXT_CATEGORY_SEVERITY", {})}
    return max((table.get(c, 40) for c in categories), default=40)


def _field_report(name, label, value, terms, deadline=None):
    """(report or None, hits, stopped): stopped when the deadline passed before every term was tried."""
    norm = text.normalise(value)
    try:
        hits, stopped = text.match_terms(value, terms, field=name, normalised=norm, deadline=deadline), False
    except text.TimeBudgetExceeded as exc:
        hits, stopped = exc.hits, True
    if not hits:
        return None, [], stopped
    spans = [{k: h[k] for k in ("start", "end", "term", "match", "category", "weight", "found")} for h in hits]
    return {
        "field": name, "label": label, "text": value[:text.MAX_CHARS], "truncated": norm.truncated,
        "spans": spans, "tricks": sorted(norm.tricks),
    }, hits, stopped


def _describe(hit):
    shown = hit["found"] if hit["match"] == TermMatch.PATTERN else hit["term"]
    return f"'{shown[:60]}' ({hit['category']}, {hit['weight']:g})"


def build_text_signal(fields, *, dedupe_prefix, item=None, account=None, group=None, terms=None):
    """One unsaved signal for the hits in these (name, label, value) fields, or None when nothing matched."""
    terms = active_terms() if terms is None else terms
    # A second line behind RE2's linear-time matching: one subject's texts get a time budget.
    budget = getattr(settings, "TEXT_MATCH_SECONDS", 2.0)
    started = time.monotonic()
    reports, all_hits, stopped = [], [], False
    for name, label, value in fields:
        if not value:
            continue
        report, hits, stopped = _field_report(name, label, value, terms, deadline=started + budget)
        if report:
            reports.append(report)
            all_hits += hits
        if stopped:
            break
    if stopped:
        log.warning("text matching for %s stopped after %.2f s (TEXT_MATCH_SECONDS=%s) with %d hits; "
                    "the rest of its text was not matched", dedupe_prefix, time.monotonic() - started, budget,
                    len(all_hits))
    if not all_hits:
        return None
    categories = sorted({h["category"] for h in all_hits})
    distinct = {}
    for hit in all_hits:
        distinct.setdefault((hit["term"], hit["match"], hit["category"]), hit)
    parts = []
    for report in reports:
        seen, described = set(), []
        for span in report["spans"]:
            key = (span["term"], span["match"], span["category"], span["found"] if span["match"] == "pattern" else "")
            if key not in seen:
                seen.add(key)
                described.append(_describe(span))
        parts.append(f"{report['label']} matches " + ", ".join(described[:8]) + (" …" if len(described) > 8 else ""))
    explanation = "; ".join(parts) + "."
    tricks = sorted({t for r in reports for t in r["tricks"]})
    if tricks:
        explanation += " Written with " + ", ".join(TRICKS.get(t, t) for t in tricks) + "."
    if stopped:
        explanation += " Matching stopped at its time limit: the rest of the text was not checked."
    fingerprint = hashlib.sha256(repr((
        [(r["field"], r["text"]) for r in reports], sorted(distinct),
    )).encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return Signal(
        item=item, account=account, group=group,
        kind=SignalKind.TEXT, detector=DETECTOR,
        label=("Text: " + ", ".join(TermCategory(c).label if c in TermCategory.values else c
                                    for c in categories))[:128],
        score=text.score(all_hits),
        severity=severity_for(categories),
        explanation=explanation,
        details={
            "fields": reports,
            "terms": [{"term": h["term"], "match": h["match"], "category": h["category"], "weight": h["weight"],
                       "term_id": h["term_id"]} for h in distinct.values()],
            "categories": categories,
            "tricks": tricks,
            **({"incomplete": True} if stopped else {}),
        },
        dedupe_key=f"{dedupe_prefix}:{fingerprint}" if item is None else dedupe_prefix,
    )


def surface_signals(*, account=None, group=None):
    """Unsaved text signals for an account's and/or a group's names and descriptions (one per subject).

    The dedupe key holds a hash of the matched texts and terms: unchanged text gives the same key
    (so no new signal), edited text a new one.
    """
    signals = []
    if account is not None:
        signal = build_text_signal(
            [(name, label, getattr(account, name) or "") for name, label in ACCOUNT_FIELDS],
            dedupe_prefix=f"account:{account.pk}:text", account=account)
        if signal:
            signals.append(signal)
    if group is not None:
        signal = build_text_signal(
            [(name, label, getattr(group, name) or "") for name, label in GROUP_FIELDS],
            dedupe_prefix=f"group:{group.pk}:text", group=group)
        if signal:
            signals.append(signal)
    return signals


def item_text_signals(item):
    """The text signal for a text item (a list of zero or one unsaved signal)."""
    signal = build_text_signal([("text", "Message", item.text or "")], dedupe_prefix=f"item:{item.pk}:text",
                               item=item, account=item.account, group=item.group if item.group_id else None)
    return [signal] if signal else []


# ---- loading lists from CSV -----------------------------------------------------------------


@dataclass
class LoadResult:
    rows: list = field(default_factory=list)     # valid rows, as dicts
    errors: list = field(default_factory=list)   # (line number, message)


def _category(value):
    value = (value or "").strip().lower()
    for choice in TermCategory:
        if value in (choice.value, choice.label.lower()):
            return choice.value
    raise ValueError(f"unknown category {value!r}; use one of {', '.join(TermCategory.values)}")


def validate_row(raw):
    """One CSV row as a clean dict, or ValueError saying what is wrong with it."""
    category = _category(raw.get("category"))
    term = (raw.get("term") or "").strip()
    if not term:
        raise ValueError("term is empty")
    if len(term) > 255:
        raise ValueError("term is longer than 255 characters")
    match = (raw.get("match") or TermMatch.WORD).strip().lower()
    if match not in TermMatch.values:
        raise ValueError(f"unknown match {match!r}; use word, substring or pattern")
    try:
        weight = float((raw.get("weight") or "0.5").strip())
    except ValueError:
        raise ValueError(f"weight {raw.get('weight')!r} is not a number") from None
    if not 0 <= weight <= 1:
        raise ValueError(f"weight {weight:g} is outside 0..1")
    text.check_term(term, match)
    return {"category": category, "term": term, "match": match, "weight": weight,
            "note": (raw.get("note") or "").strip()[:255]}


def read_csv(handle, progress=None):
    """Parse a term list (header: category,term,match,weight,note); bad rows are reported, not fatal."""
    result = LoadResult()
    if isinstance(handle, bytes | str):
        handle = io.StringIO(handle.decode("utf-8-sig") if isinstance(handle, bytes) else handle)
    reader = csv.DictReader(handle)
    header = [h.strip().lower() for h in (reader.fieldnames or [])]
    if "category" not in header or "term" not in header:
        result.errors.append((1, "the header must name at least the columns category and term "
                                 "(category,term,match,weight,note)"))
        return result
    reader.fieldnames = header
    while True:
        try:
            raw = next(reader)
        except StopIteration:
            break
        except (csv.Error, UnicodeDecodeError) as exc:
            result.errors.append((reader.line_num, f"unreadable: {exc}"))
            break
        if progress:
            progress(1)
        if not any((v or "").strip() for v in raw.values() if isinstance(v, str)):
            continue
        if None in raw:
            result.errors.append((reader.line_num, "too many columns (quote terms that contain commas)"))
            continue
        try:
            result.rows.append(validate_row(raw))
        except ValueError as exc:
            result.errors.append((reader.line_num, str(exc)))
    return result


def upsert_terms(rows, *, replace_categories=()):
    """Create or update terms by (category, term, match); idempotent. With replace_categories, terms in
    those categories that are not in `rows` are deleted. Returns counts."""
    counts = {"created": 0, "updated": 0, "unchanged": 0, "deleted": 0}
    by_key = {(r["category"], r["term"], r["match"]): r for r in rows}
    with transaction.atomic():
        existing = {(t.category, t.term, t.match): t for t in TextTerm.objects.all()}
        new, changed = [], []
        for key, row in by_key.items():
            term = existing.get(key)
            if term is None:
                new.append(TextTerm(**row))
            elif (term.weight, term.note, term.enabled) != (row["weight"], row["note"], True):
                term.weight, term.note, term.enabled = row["weight"], row["note"], True
                changed.append(term)
            else:
                counts["unchanged"] += 1
        TextTerm.objects.bulk_create(new, batch_size=1000)
        for term in changed:
            term.save(update_fields=["weight", "note", "enabled", "updated_at"])  # bumps updated_at for caches
        counts["created"], counts["updated"] = len(new), len(changed)
        if replace_categories:
            stale = [t.pk for key, t in existing.items() if key[0] in replace_categories and key not in by_key]
            counts["deleted"] = TextTerm.objects.filter(pk__in=stale).delete()[0]
    forget_terms()
    return counts
