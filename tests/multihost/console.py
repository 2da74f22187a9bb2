"""The console's side of the run, through its own code: setting it up, watching it, checking what it did.

Imported once Django is set up against the hosts' database and Redis (see __main__).
"""

import io
import json
import os
import signal
import time
from collections import Counter
from contextlib import suppress
from datetime import timedelta
from types import SimpleNamespace

import django_rq
import requests
from django.conf import settings
from django.core.management import call_command
from django.db.models import Count
from django.utils import timezone
from rq import Worker

from cases.actions.rules import _spec_of, backtest, current_version, save_rule
from cases.dispatch import DELIVERY_HEADER, SIGNATURE_HEADER, verify
from cases.models import (
    CaseStatus,
    CyberTipReport,
    Decision,
    Enforcement,
    EnforcementStatus,
    Platform,
    Rule,
    RuleMode,
)
from detection.models import Bank, Item, ItemStatus, Signal, SignalKind
from tests.multihost.hosts import SWEEP_AFTER, SWEEP_INTERVAL, WEB_PORT, WORKER_HOSTS, logs, manage, supervised
from tests.multihost.machine import Failed
from tests.multihost.platform import Uploader, known_hashes_csv

CUT_SECONDS = 30
SCAN_JOB = "detection.jobs.scan.scan_pending"
# deploy/reviewconsole-worker@.service
WORKER = manage("rqworker", "triage", "dispatch", "scan", "classify", "default", "--max-jobs", "5000",
                "--with-scheduler", "-v", "0")


def out(line=""):
    print(line, flush=True)


def set_up(folder, known, receiver):
    """What an admin and a senior would set up: a token for the platform, a verified bank of the known
    pictures, the platform's webhook, and a rule that decides known material."""
    stdout = io.StringIO()
    call_command("create_api_token", "platform", stdout=stdout)
    token = stdout.getvalue().strip()
    csv = folder / "known.csv"
    known_hashes_csv(csv, known)
    call_command("import_hashes", "known-material", str(csv), "--format", "csv", verbosity=0, stdout=io.StringIO())
    bank = Bank.objects.get(name="known-material")
    Bank.objects.filter(pk=bank.pk).update(trust="verified")  # as the demo data does: no action sets trust yet
    platform = Platform.objects.create(name="platform", webhook_url=receiver.url)
    conditions = [{"field": "signal.kind", "op": "eq", "value": "hash_match"},
                  {"field": "bank.trust", "op": "eq", "value": "verified"}]
    rule = Rule(code="known-verified", title="Known material, verified bank", qa_percent_new=0)
    save_rule(None, rule, conditions_list=conditions, effect="apply_policy", policy_code="csam-known",
              mode=RuleMode.SHADOW)
    backtest(None, rule, _spec_of(current_version(rule)), days=1)
    save_rule(None, rule, conditions_list=conditions, effect="apply_policy", policy_code="csam-known",
              mode=RuleMode.ON)
    return SimpleNamespace(token=token, bank=bank, rule=rule, platform=platform, receiver=receiver)


def wait_until_serving(lab, *hosts, seconds=180):
    """The web server answers, and one RQ worker of each of `hosts` is registered (the web host's: retro)."""
    deadline = time.monotonic() + seconds
    url = f"http://{lab.addr['web']}:{WEB_PORT}/healthz"
    conn = django_rq.get_connection("scan")
    while time.monotonic() < deadline:
        with suppress(requests.RequestException):
            workers = {w.pid for w in Worker.all(connection=conn)}
            if requests.get(url, timeout=2).status_code == 200 and all(
                    len(workers & set(lab.pids(host))) == 1 for host in hosts):
                return
        time.sleep(0.5)
    raise Failed("the console did not come up:\n" + logs(lab, "web", *hosts))


def scanning_pids(conn):
    """Pids of the RQ workers running a scan job now."""
    busy = set()
    for worker in Worker.all(connection=conn):
        try:
            job = worker.get_current_job()
        except Exception:  # noqa: BLE001 - a job that finished while we looked: not scanning
            job = None
        if job is not None and job.func_name == SCAN_JOB:
            busy.add(worker.pid)
    return busy


def live_claims():
    """{item id: scan token} of the queued items a scan holds now."""
    fresh = timezone.now() - timedelta(seconds=settings.SCAN_LEASE_SECONDS)
    return dict(Item.objects.filter(status=ItemStatus.QUEUED, scan_started_at__gte=fresh).exclude(scan_token="")
                .values_list("pk", "scan_token"))


def progress(known_accounts):
    decided = Decision.objects.filter(case__account__external_id__in=known_accounts, rule_version__isnull=False)
    enforcements = Enforcement.objects.filter(decision__in=decided)
    return {
        "queued": Item.objects.filter(status=ItemStatus.QUEUED).count(),
        "untriaged": Signal.objects.filter(triaged_at__isnull=True).count(),
        "decided": decided.values("case__account").distinct().count(),
        "enforcements": enforcements.count(),
        "undelivered": enforcements.exclude(status=EnforcementStatus.DELIVERED).count(),
    }


def exercise(args, lab, setup, env):
    """Send the items; kill the worker host that holds a scan claim; cut the other off from Redis for a
    while; wait until everything is done. Returns what check() needs."""
    items = setup.items
    known_accounts = sorted({account for _, account, _, k in items if k is not None})
    conn = django_rq.get_connection("scan")
    uploader = Uploader(f"http://{lab.addr['web']}:{WEB_PORT}/api/v1/items", setup.token, items)
    t0, events = uploader.started, {}
    # The worker hosts come up once a third of the items wait: their first scans claim full batches, which
    # take seconds, where a scan keeping up with the uploads holds a few items for a few milliseconds.
    while uploader.sent < len(items) // 3 and not uploader.done():
        time.sleep(0.05)
    for host in WORKER_HOSTS:
        supervised(lab, host, {"worker": WORKER}, env[host])
    wait_until_serving(lab, *WORKER_HOSTS)
    events["workers"] = time.monotonic()
    victim = None
    while victim is None:
        if time.monotonic() - t0 > args.timeout:
            raise Failed("no worker host was seen scanning while holding a claim:\n" + logs(lab, *WORKER_HOSTS))
        pids = {host: lab.pids(host) for host in WORKER_HOSTS}
        scanning, claims = scanning_pids(conn), live_claims()
        busy = [host for host in WORKER_HOSTS if scanning & set(pids[host])]
        # One scanning process a worker host, so one claim each at most: when a single host scans, a
        # claim is its; when both do, each holds one once there are two.
        if busy and claims and (len(busy) == 1 or len(set(claims.values())) >= 2):
            victim = busy[0]
            for pid in pids[victim]:  # at once, before its batch is done; then whatever else runs there
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            lab.kill(victim)
            events["kill"], killed_at = time.monotonic(), timezone.now()
            claims |= live_claims()
        else:
            time.sleep(0.02)
    survivor = next(host for host in WORKER_HOSTS if host != victim)
    out(f"+{events['kill'] - t0:4.0f} s  {victim} killed (every process, SIGKILL) in the middle of a scan, "
        f"{uploader.sent} of {len(items)} items sent")
    time.sleep(1)
    lab.cut(survivor, "redis")
    events["cut"] = time.monotonic()
    out(f"+{events['cut'] - t0:4.0f} s  {survivor} cut off from Redis")
    time.sleep(CUT_SECONDS)
    lab.restore()
    events["restore"] = time.monotonic()
    out(f"+{events['restore'] - t0:4.0f} s  {survivor}'s link to Redis restored")

    deadline, state = events["restore"] + args.timeout, {}
    while time.monotonic() < deadline:
        state, now = progress(known_accounts), time.monotonic()
        if uploader.done() and not state["queued"]:
            events.setdefault("scanned", now)
        if state["decided"] == len(known_accounts):
            events.setdefault("decided", now)
        if "scanned" in events and "decided" in events and not state["untriaged"] and not state["undelivered"]:
            events["delivered"] = now
            break
        time.sleep(1)
    else:
        raise Failed(f"not done {args.timeout} s after the link came back: {state}\n" + logs(lab, "web", survivor))
    if uploader.errors:
        raise Failed(f"{len(uploader.errors)} items could not be sent: {uploader.errors[:5]}")
    time.sleep(2)  # a second delivery of something, were one in flight, would arrive now
    return SimpleNamespace(claims=claims, killed_at=killed_at, t0=t0, events=events, sent_in=uploader.seconds(),
                           victim=victim, survivor=survivor)


def check(setup, run):
    """Every item scanned exactly once, every known-material case decided once, every enforcement delivered
    once: read from the database and the receiver. Returns (problems, figures)."""
    items = setup.items
    known_accounts = sorted({account for _, account, _, k in items if k is not None})
    problems = []
    rows = {row.external_id: row for row in Item.objects.all()}
    if set(rows) != {external_id for external_id, *_ in items}:
        problems.append(f"{len(rows)} items in the database, not the {len(items)} sent")
    not_scanned = Counter(row.status for row in rows.values() if row.status != ItemStatus.SCANNED)
    if not_scanned:
        problems.append(f"items not scanned: {dict(not_scanned)}")

    # Scans started per item: one, but two for the items of the claim that died with its host (that claim,
    # then the one that finished), a claim taken before the kill. A claim that finished was stored whole
    # (its items once each); the dead one was taken over whole (twice each).
    by_pk = {row.pk: row for row in rows.values()}
    held = {}
    for pk, token in run.claims.items():
        held.setdefault(token, set()).add(pk)
    lost = set()
    for pks in held.values():
        starts = {by_pk[pk].scan_attempts for pk in pks if pk in by_pk}
        if starts == {2}:
            lost |= pks
        elif starts != {1}:
            problems.append(f"a claim held at the kill: its items were started {sorted(starts)} times")
    if not lost:
        problems.append(f"{run.victim} held no claim when it was killed: nothing had to be recovered")
    for row in rows.values():
        if row.scan_attempts != 1 and row.pk not in run.claims:
            problems.append(f"item {row.external_id}: {row.scan_attempts} scans started, expected 1")
    again = [by_pk[pk].scanned_at for pk in lost if by_pk[pk].scanned_at]
    recovery = max((at - run.killed_at).total_seconds() for at in again) if again else None

    # One finding of the known bank for each copy of a known picture, none for anything else.
    matched = Signal.objects.filter(kind=SignalKind.HASH_MATCH, details__bank_id=setup.bank.pk)
    matches = {row["item__external_id"]: row["n"]
               for row in matched.values("item__external_id").annotate(n=Count("pk"))}
    for external_id, _, _, k in items:
        if matches.get(external_id, 0) != (k is not None):
            problems.append(f"item {external_id}: {matches.get(external_id, 0)} matches of the known bank, "
                            f"expected {int(k is not None)}")

    decisions = list(Decision.objects.select_related("case__account", "rule_version").filter(
        rule_version__isnull=False))
    by_account = Counter(d.case.account.external_id if d.case.account_id else None for d in decisions)
    for account in known_accounts:
        if by_account[account] != 1:
            problems.append(f"{account}: {by_account[account]} automated decisions, expected 1")
    strays = set(by_account) - set(known_accounts)
    if strays:
        problems.append(f"automated decisions on accounts that sent nothing known: {sorted(map(str, strays))}")
    for decision in decisions:
        if (decision.rule_version.rule_id != setup.rule.pk or decision.undone_at
                or decision.case.status != CaseStatus.CLOSED):
            problems.append(f"decision {decision.pk}: not the rule's, undone, or its case not closed")
    reports = CyberTipReport.objects.filter(decision__in=decisions).count()
    if reports != len(decisions):
        problems.append(f"{reports} CyberTipline reports for {len(decisions)} reportable decisions")

    # One ban of each such account and one removal of each known copy, each delivered. At the receiver each
    # enforcement at least once, and more than once only where an attempt's outcome was lost: delivery is
    # at least once by design, under a delivery id that stays the same across attempts for the platform to
    # dedupe on.
    enforcements = list(Enforcement.objects.filter(decision__in=decisions))
    targets = Counter((e.action, e.target) for e in enforcements)
    wanted = [("ban_account", a) for a in known_accounts] + [
        ("remove_content", x) for x, _, _, k in items if k is not None]
    for key in wanted:
        if targets[key] != 1:
            problems.append(f"{key[0]} {key[1]}: {targets[key]} enforcements, expected 1")
    received = Counter()
    for headers, body, at in setup.receiver.deliveries:
        enforcement = json.loads(body).get("id")
        received[enforcement] += 1
        if headers.get(DELIVERY_HEADER.lower()) != f"enforcement-{enforcement}":
            problems.append(f"a delivery of enforcement {enforcement} under {headers.get(DELIVERY_HEADER.lower())}")
        if not verify(setup.platform.signing_secret, headers.get(SIGNATURE_HEADER.lower(), ""), body, now=at):
            problems.append(f"a delivery of enforcement {enforcement} with a bad signature")
    unknown = set(received) - {e.pk for e in enforcements}
    if unknown:
        problems.append(f"deliveries of unknown enforcements: {sorted(map(str, unknown))[:5]}")
    for e in enforcements:
        if e.status != EnforcementStatus.DELIVERED or not e.dispatched_at:
            problems.append(f"enforcement {e.pk} ({e.action} {e.target}): {e.status}")
        if not 1 <= received[e.pk] <= max(e.attempts, 1):
            problems.append(f"enforcement {e.pk}: delivered {received[e.pk]} times in {e.attempts} attempts")

    return problems, {
        "items": len(items), "accounts": len({account for _, account, *_ in items}), "known": len(known_accounts),
        "lost": len(lost), "recovery": recovery,
        "starts": dict(sorted(Counter(row.scan_attempts for row in rows.values()).items())),
        "decisions": len(decisions), "enforcements": len(enforcements), "deliveries": sum(received.values()),
        "repeated": sum(1 for e in enforcements if received[e.pk] > 1),
        "attempts": dict(sorted(Counter(e.attempts for e in enforcements).items())),
    }


def report(run, timings, f):
    def at(name):
        return f"+{run.events[name] - run.t0:.0f} s"

    out()
    out(f"setup: servers {timings['servers']:.0f} s, migrations {timings['migrations']:.0f} s, web host up in "
        f"{timings['console']:.0f} s, worker hosts up at {at('workers')}; sweep every {SWEEP_INTERVAL} s for work "
        f"older than {SWEEP_AFTER} s")
    out(f"sent {f['items']} pictures from {f['accounts']} accounts through the API in {run.sent_in:.0f} s; "
        f"{f['known']} of the accounts sent a copy of a known picture")
    recovery = f"{f['recovery']:.0f} s after the kill" if f["recovery"] is not None else "never"
    out(f"{run.victim} killed at {at('kill')} holding {f['lost']} items: scanned again on {run.survivor} {recovery}")
    out(f"{run.survivor} cut off from Redis from {at('cut')} to {at('restore')}")
    out(f"every item scanned at {at('scanned')}, every known-material case decided at {at('decided')}, "
        f"every enforcement delivered at {at('delivered')}")
    out(f"items by scans started: {f['starts']}; {f['decisions']} automated decisions; {f['enforcements']} "
        f"enforcements, by attempts {f['attempts']}; {f['deliveries']} webhook deliveries, {f['repeated']} "
        f"enforcements received more than once")
