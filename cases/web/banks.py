"""Bank pages: the list, one bank's entries (paged, searchable), settings, import and export."""

import re
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from cases.web.bank_forms import LIMITS, BankSettingsForm, ImportForm, NewBankForm
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
from detection.models import Bank, BankHash, HashType
from reviewconsole.audit.events import Event
from reviewconsole.audit.recorder import audit

PAGE = 50
RECENT_IMPORTS = 10  # uploads listed on a bank's page, newest first
COUNT_CAP = 10_000  # past this a filtered count says "10,000+" rather than scan a 10M-row bank
HEX_PREFIX = re.compile(r"^(0x)?[0-9a-f]{1,64}$")


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
    entries = BankHash.objects.filter(bank=bank)
    if hash_type in HashType.values:
        entries = entries.filter(hash_type=hash_type)
    with_counts(bank)
    if query.strip():
        entries, matched = search(entries, query)
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
    base = {"q": query, "type": hash_type}
    return render(request, "detection/bank_detail.html", {
        "bank": bank, "entries": page, "counts": bank.counts, "total": bank.total, "query": query,
        "hash_type": hash_type, "types": HashType.choices, "matched": matched, "capped": matched > COUNT_CAP,
        "cap": COUNT_CAP, "older": _page_url(base, after=page[-1].pk) if page and more_older else "",
        "newer": _page_url(base, before=page[0].pk) if page and more_newer else "",
        "first": _page_url(base) if after or before else "",
        "can_change": request.user.has_perm("detection.change_bank"),
        "exchange": getattr(bank, "exchange", None),
        "imports": bank.imports.select_related("requested_by")[:RECENT_IMPORTS],
    })


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
