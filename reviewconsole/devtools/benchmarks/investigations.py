"""Benchmark: search, subject pages and pivots at a large platform's size.

At scale 1.0: 1 M accounts, 100,000 groups, 10 M hash-only items and 1 M cases (one signal each), with a
subject of 10,000 items, a group of 10,000 members, near-duplicate clusters of pictures shared by many
accounts, linked phones, CyberTipline reports and legal requests to be found by their numbers. Rows are
written with COPY on PostgreSQL (bulk_create elsewhere) and the database is ANALYZEd, as a live one
would be; the data is kept under its tag, so `--investigations-reuse` measures again without
regenerating. A worker on the retro queue owns the index of stored items, as in production; the PDQ
search and the item pivot ask it. Each page is requested through the Django test client in this process
(server time, no network), after one warm-up request, and reported as median and 95th percentile.
"""

import json
import re
import subprocess
import sys
import time

import numpy as np
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group as Role
from django.db import connection
from django.test import Client
from django.utils import timezone
from tqdm import tqdm

from cases.models import Case, ReviewQueue
from detection.models import Account, AccountLink, Group, Item, Membership, Signal

SIZES = {"accounts": 1_000_000, "groups": 100_000, "items": 10_000_000, "cases": 1_000_000}
TAG = "inv"
BIG_SUBJECT_ITEMS = 10_000
BIG_GROUP_MEMBERS = 10_000
CLUSTERS, CLUSTER_SIZE = 1000, 20
PAGE = 100_000
WORDS = ["amber", "birch", "cedar", "delta", "ember", "fjord", "grove", "harbor", "indigo", "juniper", "kestrel",
         "lumen", "maple", "nimbus", "onyx", "prairie", "quartz", "raven", "sierra", "tundra", "umber", "violet",
         "willow", "xenon", "yarrow", "zephyr"]
RUNS = 40
WORKER = """
import sys, django
django.setup()
from django.core.management import call_command
call_command("rqworker", "retro", verbosity=0)
"""


def _copy(model, columns, rows):
    """Write `rows` (tuples in `columns` order) into `model`'s table: COPY on PostgreSQL."""
    table = model._meta.db_table
    if connection.vendor == "postgresql":
        # COPY knows nothing of Django's defaults: every other NOT NULL column gets its default here.
        given = {model._meta.get_field(c).column for c in columns}
        rest = [f for f in model._meta.concrete_fields
                if f.column not in given and not f.primary_key and not f.null]
        extra = tuple(f.get_db_prep_save(f.get_default(), connection) for f in rest)
        names = ", ".join([model._meta.get_field(c).column for c in columns] + [f.column for f in rest])
        with connection.cursor() as cursor, cursor.cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row + extra)
        return
    batch = []
    for row in rows:
        batch.append(model(**dict(zip(columns, row, strict=True))))
        if len(batch) == 5000:
            model.objects.bulk_create(batch)
            batch = []
    model.objects.bulk_create(batch)


def _ids(model, prefix):
    return dict(model.objects.filter(external_id__startswith=prefix).values_list("external_id", "pk").iterator())


def generate(out, scale, seed=20261202):
    rng = np.random.default_rng(seed)
    n_accounts, n_groups = max(2000, int(SIZES["accounts"] * scale)), max(200, int(SIZES["groups"] * scale))
    n_items, n_cases = max(20_000, int(SIZES["items"] * scale)), max(2000, int(SIZES["cases"] * scale))
    big_items, big_members = min(BIG_SUBJECT_ITEMS, n_items // 4), min(BIG_GROUP_MEMBERS, n_accounts // 2)
    now = timezone.now()
    started = time.perf_counter()
    out(f"investigations: generating {n_accounts:,} accounts, {n_groups:,} groups, {n_items:,} items, "
        f"{n_cases:,} cases")
    words = np.array(WORDS)
    with tqdm(total=n_accounts, unit="account", desc="accounts") as bar:
        for start in range(0, n_accounts, PAGE):
            end = min(start + PAGE, n_accounts)
            a, b = rng.integers(0, len(WORDS), (2, end - start))
            _copy(Account, ["external_id", "screen_name", "display_name", "facts", "status", "created_at",
                            "updated_at", "bio", "email", "phone", "age_band"],
                  ((f"{TAG}-a{n}", f"{words[x]}_{words[y]}{n % 997}", f"{words[x].title()} {words[y].title()}",
                    "{}", "active", now, now, "", "", "", "") for n, x, y in zip(range(start, end), a, b, strict=True)))
            bar.update(end - start)
    accounts = _ids(Account, f"{TAG}-a")
    account_pk = np.array([accounts[f"{TAG}-a{n}"] for n in range(n_accounts)], dtype=np.int64)
    _copy(Group, ["external_id", "name", "description", "member_count", "facts", "status", "created_at",
                  "updated_at"],
          ((f"{TAG}-g{n}", f"{WORDS[n % 26].title()} {WORDS[(n // 26) % 26]} club {n}", "", 0, "{}", "active",
            now, now) for n in range(n_groups)))
    groups = _ids(Group, f"{TAG}-g")
    group_pk = np.array([groups[f"{TAG}-g{n}"] for n in range(n_groups)], dtype=np.int64)
    # Two groups an account on average; group 0 has `big_members` members.
    pairs = {(int(m), 0) for m in range(big_members)}
    members = rng.integers(0, n_accounts, 2 * n_accounts)
    for m, g in zip(members, rng.integers(1, n_groups, len(members)), strict=True):
        pairs.add((int(m), int(g)))
    _copy(Membership, ["account_id", "group_id", "role"],
          ((int(account_pk[m]), int(group_pk[g]), "") for m, g in tqdm(sorted(pairs), desc="memberships")))
    # Linked accounts: one phone hash shared by pairs of accounts.
    linked = rng.integers(0, n_accounts, max(1000, n_accounts // 50))
    _copy(AccountLink, ["account_id", "kind", "value"],
          ((int(account_pk[m]), "phone", f"{n // 2:064x}") for n, m in enumerate(sorted(set(linked.tolist())))))
    _items(rng, n_items, account_pk=account_pk, group_pk=group_pk, big_items=big_items, now=now)
    _cases(n_cases, account_pk, now)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    out(f"investigations: generated in {time.perf_counter() - started:.0f} s")


def _items(rng, n_items, *, account_pk, group_pk, big_items, now):
    """Items: account 0 sent `big_items`; clusters of near copies of one picture (one bit apart) are sent
    by different accounts; the rest random. Every item is hash-only and scanned, with an IP of 10.x."""
    base = rng.integers(0, 2**63, (CLUSTERS, 4), dtype=np.uint64)
    every = max(1, n_items // (CLUSTERS * CLUSTER_SIZE))
    columns = ["account_id", "group_id", "kind", "external_id", "md5", "sha256", "pdq", "pdq_quality", "ip",
               "hash_only", "status", "scanned_at", "enqueued_at", "created_at"]
    stamp = now.isoformat()
    with tqdm(total=n_items, unit="item", desc="items") as bar:
        for start in range(0, n_items, PAGE):
            end = min(start + PAGE, n_items)
            count = end - start
            owner = rng.integers(1, len(account_pk), count)
            owner[: max(0, min(count, big_items - start))] = 0
            group = np.where(rng.random(count) < 0.5, rng.integers(0, len(group_pk), count), -1)
            pdq = rng.integers(0, 2**63, (count, 4), dtype=np.uint64)
            for i in np.flatnonzero(np.arange(start, end) % every == 0):
                near = base[((start + i) // every) % CLUSTERS].copy()
                near[0] ^= np.uint64(1) << np.uint64(int(rng.integers(0, 63)))
                pdq[i] = near
            pdq_hex = pdq.astype(">u8").tobytes().hex()
            md5 = rng.bytes(16 * count).hex()
            sha = rng.bytes(32 * count).hex()
            ips = rng.integers(0, 2**24, count)
            accounts = account_pk[owner].tolist()
            groups = [int(group_pk[g]) if g >= 0 else None for g in group.tolist()]
            ip_text = [f"10.{ip >> 16}.{(ip >> 8) & 255}.{ip & 255}" for ip in ips.tolist()]
            if connection.vendor == "postgresql":
                # One text block per page: building and adapting ten million row tuples costs ten times more.
                lines = "".join(
                    f"{accounts[i]}\t{groups[i] if groups[i] is not None else chr(92) + 'N'}\timage\ti{start + i}\t"
                    f"{md5[32 * i:32 * i + 32]}\t{sha[64 * i:64 * i + 64]}\t{pdq_hex[64 * i:64 * i + 64]}\t90\t"
                    f"{ip_text[i]}\tt\tscanned\t{stamp}\t{stamp}\t{stamp}\n" for i in range(count))
                _copy_text(Item, columns, lines)
            else:
                _copy(Item, columns, ((accounts[i], groups[i], "image", f"i{start + i}", md5[32 * i:32 * i + 32],
                                       sha[64 * i:64 * i + 64], pdq_hex[64 * i:64 * i + 64], 90, ip_text[i], True,
                                       "scanned", now, now, now) for i in range(count)))
            bar.update(count)


def _copy_text(model, columns, lines):
    """COPY of lines already in PostgreSQL's text format (tab-separated, \\N for null), defaults appended."""
    given = {model._meta.get_field(c).column for c in columns}
    rest = [f for f in model._meta.concrete_fields if f.column not in given and not f.primary_key and not f.null]
    extra = "".join("\t" + _text(f.get_default()) for f in rest)
    names = ", ".join([model._meta.get_field(c).column for c in columns] + [f.column for f in rest])
    if extra:
        lines = lines.replace("\n", extra + "\n")
    with connection.cursor() as cursor, cursor.cursor.copy(
            f"COPY {model._meta.db_table} ({names}) FROM STDIN") as copy:
        copy.write(lines)


def _text(value):
    if value is None:
        return "\\N"
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


def _cases(n_cases, account_pk, now):
    """One case per account (accounts 0..n_cases), each with one signal; a tenth closed."""
    queues = list(ReviewQueue.objects.filter(senior_only=False).values_list("pk", flat=True))
    with tqdm(total=n_cases, unit="case", desc="cases") as bar:
        for start in range(0, n_cases, PAGE):
            end = min(start + PAGE, n_cases)
            _copy(Case, ["account_id", "queue_id", "status", "priority", "base_priority", "summary",
                         "possible_minor_victim", "version", "resolution", "created_at", "updated_at", "closed_at"],
                  ((int(account_pk[n]), queues[n % len(queues)], "closed" if n % 10 == 0 else "open", (n * 37) % 100,
                    (n * 37) % 100, "Near match, bank bench-known", "", 0, "", now, now, now if n % 10 == 0 else None)
                   for n in range(start, end)))
            bar.update(end - start)
    wanted = account_pk[:n_cases].tolist()
    cases = {}
    for start in range(0, len(wanted), 10_000):  # by the account index: no join on freshly loaded tables
        cases.update(Case.objects.filter(account_id__in=wanted[start:start + 10_000]).values_list("account_id", "pk"))
    _copy(Signal, ["account_id", "kind", "detector", "label", "score", "severity", "explanation", "details",
                   "dedupe_key", "case_id", "triaged_at", "created_at"],
          ((int(a), "hash_match", "pdq", "Known material (benchmark)", 0.9, 90,
            "Near match to a benchmark bank entry", "{}", f"{TAG}-s{n}", cases[int(a)], now, now)
           for n, a in enumerate(account_pk[:n_cases])))


def _timed(client, url, runs=RUNS):
    client.get(url, secure=True)  # warm-up
    timings = []
    for _ in range(runs):
        start = time.perf_counter()
        response = client.get(url, secure=True)
        timings.append(time.perf_counter() - start)
        if response.status_code not in (200, 302):
            raise AssertionError(f"{url} answered {response.status_code}")
    timings.sort()
    return timings[len(timings) // 2] * 1000, timings[int(len(timings) * 0.95) - 1] * 1000


def measure(out):
    big = Account.objects.get(external_id=f"{TAG}-a0")
    big_group = Group.objects.get(external_id=f"{TAG}-g0")
    sample = Item.objects.filter(account__external_id=f"{TAG}-a5").first() or Item.objects.exclude(account=big).first()
    clustered = Item.objects.filter(external_id="i0").first()
    user = get_user_model().objects.create_user(f"bench-investigator-{int(time.time())}", password="x" * 16)
    user.groups.add(Role.objects.get(name="senior"))
    client = Client(HTTP_HOST=settings.ALLOWED_HOSTS[0])
    client.force_login(user)
    worker = subprocess.Popen([sys.executable, "-c", WORKER], cwd=settings.BASE_DIR, stdout=subprocess.DEVNULL)
    try:
        from cases.search import near_items
        ready = time.perf_counter()
        # The first search finds the worker's index cold: a large one is built by a job of its own meanwhile
        # (searches fall back to exact matches until it is ready), so ask until it answers.
        while True:
            first = near_items(bytes.fromhex(clustered.pdq), timeout=60)
            if not getattr(first, "exact_only", False) or time.perf_counter() - ready > 3600:
                break
            time.sleep(5)
        out(f"investigations: the worker's index of stored items answered its first search after "
            f"{time.perf_counter() - ready:.0f} s (building or loading the index): {first}")
        rows = [
            ("search: case id", f"/search/?q={Case.objects.filter(account=big).values_list('pk', flat=True).first()}"),
            ("search: account external id", f"/search/?q={TAG}-a123457"),
            ("search: screen name", f"/search/?q={big.screen_name[:9]}"),
            ("search: display name words", "/search/?q=Cedar%20Raven"),
            ("search: item id", f"/search/?q=item%20{sample.pk}"),
            ("search: MD5", f"/search/?q={sample.md5}"),
            ("search: SHA-256 / PDQ hex", f"/search/?q={sample.sha256}"),
            ("search: PDQ (near copies)", f"/search/?q={clustered.pdq}"),
            ("search: IP", f"/search/?q={sample.ip}"),
            ("search: phone hash", f"/search/?q={AccountLink.objects.values_list('value', flat=True).first()}"),
            ("subject page: 10,000 items", f"/accounts/{big.pk}/"),
            ("subject page: 10,000 members", f"/groups/{big_group.pk}/"),
            ("pivot: item to similar media", f"/items/{clustered.pk}/similar/"),
            ("pivot: account network", f"/accounts/{big.pk}/network.svg"),
            ("pivot: group network", f"/groups/{big_group.pk}/network.svg"),
        ]
        deep = _deep_page(client, f"/accounts/{big.pk}/")
        if deep:
            rows.insert(11, ("subject page: a page deep in the timeline", deep))
        figures = {}
        for label, url in rows:
            median, p95 = _timed(client, url)
            figures[label] = p95
            out(f"investigations: {label:<44} median {median:6.1f} ms, p95 {p95:6.1f} ms")
        return figures
    finally:
        worker.terminate()
        worker.wait(timeout=30)


def _deep_page(client, url, pages=20):
    """Follow the timeline's "older" link `pages` times; the last URL reached."""
    for _ in range(pages):
        html = client.get(url, secure=True).content.decode()
        found = re.search(r'href="([^"]*before=[^"]+)"', html)
        if not found:
            return url
        url = found.group(1).replace("&amp;", "&")
    return url


def run(out, scale=1.0, reuse=False):
    if not reuse or not Account.objects.filter(external_id=f"{TAG}-a0").exists():
        generate(out, scale)
    return measure(out)

