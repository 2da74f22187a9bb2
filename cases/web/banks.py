"""Bank pages: the list, one bank's entries (paged, searchable) with their record, settings, import
and export, deconfirming and reconfirming entries, and the outcomes fed back to exchanges."""

import re
from datetime import datetime, time
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Count, Q
from django.http import StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from cases.actions.rules import resume_breaker
from cases.models import Breaker, BreakerScope
from cases.web.bank_forms import LIMITS, BankSettingsForm, EntryStatusForm, ImportForm, NewBankForm
from cases.web.permissions import client_ip, require_bank_access
from detection.banks import (
    HashFileError,
    change_bank,
    create_bank,
    current_counts,
    export_lines,
    queue_import,
    remove_entry,
)
from detection.hash_quality import (
    EntryError,
    deconfirm_entry,
    export_feedback,
    feedback_summary,
    flagged_q,
    is_flagged,
    reconfirm_entry,
)
from detection.models import Bank, BankHash, BankHashOutcome, EntryOutcome, EntryStatus, HashType
from reviewconsole.audit.events import Event
from reviewconsole.audit.recorder import audit
from reviewconsole.queueing import enqueue

PAGE = 50
RECENT_IMPORTS = 10  # uploads listed on a bank's page, newest first
COUNT_CAP = 10_000  # past this a filtered count says "10,000+" rather than scan a 10M-row bank
HEX_PREFIX = re.compile(r"^(0x)?[0-9a-f]{1,64}$")
# The entries a senior looks at when tending a bank's quality: ?status=...
STATUS_FILTERS = {
    "flagged": flagged_q(),
    EntryStatus.DECONFIRMED.value: Q(status=EntryStatus.DECONFIRMED),
    EntryStatus.QUARANTINED.value: Q(status=EntryStatus.QUARANTINED),
}


def with_counts(bank):
    bank.counts, bank.counts_fresh = current_counts(bank)
    bank.total = sum(bank.counts.values())
    return bank


@login_required
@require_GET
def bank_list(request):
    if denied := require_bank_access(request, "detection.view_bank"):
        return denied
    banks = list(Bank.objects.select_related("exchange").order_by("kind", "name"))
    for bank in banks:
        with_counts(bank)
        # The newest entry is one step down the bank's index; a MAX(added_at) would read them all.
        bank.last_added = BankHash.objects.filter(bank=bank).order_by("-pk").values_list("added_at", flat=True).first()
    return render(request, "detection/bank_list.html", {
        "banks": banks, "types": HashType.choices, "can_change": request.user.has_perm("detection.change_bank"),
        "can_add": request.user.has_perm("detection.add_bank"),
    })


def search(entries, query):
    """Entries whose hash starts with the query (when it is hex) or whose label does, capped.

    Index ranges, not LIKE (which cannot use an index on SQLite), taken in index order and capped at
    COUNT_CAP, so that a search costs the same on a bank of any size.
    """
    text = query.strip()
    lowered = text.lower()
    if HEX_PREFIX.match(lowered):
        prefix = lowered[2:] if lowered.startswith("0x") and len(lowered) > 2 else lowered
        # Every hash type named, so each is a seek on the (bank, type, value) index.
        hits = entries.filter(hash_type__in=HashType.values, value__gte=prefix, value__lt=prefix + "g")
        ordered = hits.order_by("hash_type", "value")
    else:
        ordered = entries.filter(label__gte=text, label__lt=text + "\U0010ffff").order_by("label")
    capped = list(ordered.values_list("pk", flat=True)[:COUNT_CAP + 1])
    return BankHash.objects.filter(pk__in=capped[:COUNT_CAP]), len(capped)


@login_required
@require_GET
def bank_detail(request, pk):
    if denied := require_bank_access(request, "detection.view_bank"):
        return denied
    bank = get_object_or_404(Bank.objects.select_related("exchange"), pk=pk)
    query = request.GET.get("q", "")[:255]
    hash_type = request.GET.get("type", "")
    status = request.GET.get("status", "")
    status = status if status in STATUS_FILTERS else ""
    entries = BankHash.objects.filter(bank=bank)
    if hash_type in HashType.values:
        entries = entries.filter(hash_type=hash_type)
    if status:
        entries = entries.filter(STATUS_FILTERS[status])
    with_counts(bank)
    if query.strip():
        entries, matched = search(entries, query)
    elif status:
        matched = len(entries.values_list("pk", flat=True)[:COUNT_CAP + 1])
    elif hash_type in HashType.values:
        matched = bank.counts.get(hash_type, 0)
    else:
        matched = bank.total
    after, before = _int(request.GET.get("after")), _int(request.GET.get("before"))
    # Keyset paging on the id: every page costs the same on a bank of any size.
    if before:
        page = list(entries.filter(pk__gt=before).order_by("pk").select_related("added_by")[:PAGE + 1])
        more_newer, page = len(page) > PAGE, page[:PAGE][::-1]
        more_older = True
    else:
        if after:
            entries_page = entries.filter(pk__lt=after)
        else:
            entries_page = entries
        page = list(entries_page.order_by("-pk").select_related("added_by")[:PAGE + 1])
        more_older, page = len(page) > PAGE, page[:PAGE]
        more_newer = bool(after)
    with_record(page)
    base = {"q": query, "type": hash_type, "status": status}
    return render(request, "detection/bank_detail.html", {
        "bank": bank, "entries": page, "counts": bank.counts, "total": bank.total, "query": query,
        "hash_type": hash_type, "status": status, "statuses": [("flagged", "Flagged"), *[
            (s.value, s.value.capitalize()) for s in (EntryStatus.DECONFIRMED, EntryStatus.QUARANTINED)]],
        "types": HashType.choices, "matched": matched, "capped": matched > COUNT_CAP,
        "cap": COUNT_CAP, "older": _page_url(base, after=page[-1].pk) if page and more_older else "",
        "newer": _page_url(base, before=page[0].pk) if page and more_newer else "",
        "first": _page_url(base) if after or before else "",
        "can_change": request.user.has_perm("detection.change_bank"),
        "exchange": getattr(bank, "exchange", None),
        "imports": bank.imports.select_related("requested_by")[:RECENT_IMPORTS],
        "feedback": feedback_summary(bank),
    })


def with_record(entries):
    """What the page shows of each entry's record beyond its own counters: overturns (one query)."""
    overturned = dict(BankHashOutcome.objects.filter(bank_hash__in=entries, outcome=EntryOutcome.OVERTURNED)
                      .values_list("bank_hash_id").annotate(n=Count("id")).order_by())
    for entry in entries:
        entry.overturned = overturned.get(entry.pk, 0)
        entry.flagged = is_flagged(entry)
    return entries


def _int(value):
    return int(value) if value and value.isdigit() else None


def _page_url(base, **cursor):
    params = {k: v for k, v in {**base, **cursor}.items() if v}
    return "?" + urlencode(params) if params else "?"


@login_required
def bank_new(request):
    if denied := require_bank_access(request, "detection.add_bank"):
        return denied
    form = NewBankForm(request.POST or None, initial={"source": "file"})
    if request.method == "POST" and form.is_valid():
        bank = create_bank(request.user, ip=client_ip(request),
                           **{name: form.cleaned_data[name] for name in NewBankForm.Meta.fields})
        messages.success(request, f"Bank {bank.name} created.")
        return redirect("banks:detail", pk=bank.pk)
    return render(request, "detection/bank_form.html", {"form": form, "limits": LIMITS, "bank": None})


@login_required
def bank_edit(request, pk):
    if denied := require_bank_access(request, "detection.change_bank"):
        return denied
    bank = get_object_or_404(Bank, pk=pk)
    form = BankSettingsForm(request.POST or None, instance=bank)
    if request.method == "POST" and form.is_valid():
        bank = change_bank(request.user, bank, {name: form.cleaned_data[name] for name in form.changed_data},
                           ip=client_ip(request))
        messages.success(request, f"Bank {bank.name} saved." if form.changed_data else "Nothing changed.")
        return redirect("banks:detail", pk=bank.pk)
    return render(request, "detection/bank_form.html", {"form": form, "limits": LIMITS, "bank": bank})


@login_required
def bank_import(request, pk):
    if denied := require_bank_access(request, "detection.change_bank"):
        return denied
    bank = get_object_or_404(Bank, pk=pk)
    form = ImportForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        upload = form.cleaned_data["file"]
        try:
            job = queue_import(request.user, bank, upload.read(), fmt=form.cleaned_data["format"],
                               hash_type=form.cleaned_data["hash_type"] or None, ip=client_ip(request),
                               name=upload.name)
        except HashFileError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"{upload.name[:200]} is queued for import (#{job.pk}); "
                                      "its progress is listed below. Refresh to update it.")
            return redirect("banks:detail", pk=bank.pk)
    return render(request, "detection/bank_import.html", {"bank": bank, "form": form})


@login_required
@require_GET
def bank_export(request, pk):
    if denied := require_bank_access(request, "detection.view_bank"):
        return denied
    bank = get_object_or_404(Bank, pk=pk)
    # Audited before the first byte leaves, like evidence.
    audit(request.user, Event.BANK_EXPORTED, object_type="bank", object_id=bank.pk, ip=client_ip(request),
          details={"name": bank.name, "entries": sum(current_counts(bank)[0].values())})
    response = StreamingHttpResponse(export_lines(bank), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{bank.name}.csv"'
    response["Cache-Control"] = "no-store, private"
    response["X-Content-Type-Options"] = "nosniff"
    return response


@login_required
@require_POST
def entry_delete(request, pk, entry_id):
    if denied := require_bank_access(request, "detection.change_bank"):
        return denied
    entry = get_object_or_404(BankHash.objects.select_related("bank"), pk=entry_id, bank_id=pk)
    remove_entry(request.user, entry, ip=client_ip(request))
    messages.success(request, f"Entry #{entry_id} removed from {entry.bank.name}.")
    return redirect("banks:detail", pk=pk)


def _entry_change(request, pk, entry_id, change, done):
    """Deconfirm or reconfirm one entry of this bank, with the reason the form gives."""
    if denied := require_bank_access(request, "detection.change_bank"):
        return denied
    entry = get_object_or_404(BankHash.objects.select_related("bank"), pk=entry_id, bank_id=pk)
    form = EntryStatusForm(request.POST)
    if not form.is_valid():
        messages.error(request, f"Entry #{entry.pk}: " + " ".join(form.errors.get("reason", ["say why."])))
        return redirect("banks:detail", pk=pk)
    before = (entry.status, entry.status_reason)
    try:
        entry = change(request.user, entry.pk, form.cleaned_data["reason"], ip=client_ip(request))
    except EntryError as exc:
        messages.error(request, f"Entry #{entry.pk}: {exc}")
        return redirect("banks:detail", pk=pk)
    if change is reconfirm_entry:
        # A quarantine came from the entry's circuit breaker: reconfirming the entry closes it too.
        for breaker in Breaker.objects.filter(scope=BreakerScope.ENTRY, object_id=entry.pk, resumed_at__isnull=True):
            resume_breaker(request.user, breaker.pk, note=f"entry reconfirmed: {form.cleaned_data['reason']}",
                           ip=client_ip(request))
    if (entry.status, entry.status_reason) == before:
        messages.info(request, f"Entry #{entry.pk} was already {entry.get_status_display().split(' (')[0].lower()}.")
    else:
        messages.success(request, f"Entry #{entry.pk} {done}.")
    return redirect("banks:detail", pk=pk)


@login_required
@require_POST
def entry_deconfirm(request, pk, entry_id):
    return _entry_change(request, pk, entry_id, deconfirm_entry,
                         "deconfirmed: its matches are still recorded, but no rule acts on them")


@login_required
@require_POST
def entry_reconfirm(request, pk, entry_id):
    return _entry_change(request, pk, entry_id, reconfirm_entry, "reconfirmed: it acts again")


@login_required
@require_GET
def feedback_export(request, pk):
    if denied := require_bank_access(request, "detection.view_bank"):
        return denied
    bank = get_object_or_404(Bank, pk=pk)
    since = _date(request.GET.get("since", ""))
    lines = export_feedback(request.user, bank, since=since, ip=client_ip(request))
    response = StreamingHttpResponse(lines, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{bank.name}-outcomes.csv"'
    response["Cache-Control"] = "no-store, private"
    response["X-Content-Type-Options"] = "nosniff"
    return response


def _date(value):
    try:
        day = datetime.strptime(value.strip(), "%Y-%m-%d").date()
    except ValueError:
        return None
    return timezone.make_aware(datetime.combine(day, time.min))


@login_required
@require_POST
def feedback_send(request, pk):
    if denied := require_bank_access(request, "detection.change_bank"):
        return denied
    bank = get_object_or_404(Bank.objects.select_related("exchange"), pk=pk)
    if getattr(getattr(bank, "exchange", None), "api", "") != "ncmec":
        messages.error(request, f"{bank.name} has no exchange that takes feedback: export the outcomes instead.")
        return redirect("banks:detail", pk=pk)
    # The job reads what is unsent from the database: a second click, or a lost job, sends nothing twice.
    enqueue("detection.hash_quality.send_feedback", bank.pk)
    messages.success(request, f"Feedback on {bank.name}'s outcomes is being sent; refresh to see how it went.")
    return redirect("banks:detail", pk=pk)
