"""Benchmark of automated decisions: open known-material cases decided by one rule, timed and counted.

Generates `decisions` open cases, each an account with one scanned file and an exact match of a
verified bank, turns on a rule applying "csam-known" to such matches, and runs `apply_rules` over
them in batches of `batch` cases, as triage does. Reports, per decision, this process's CPU time,
the database server's (PostgreSQL on this machine: its backend's CPU read from /proc), wall time and
SQL statements, and checks that every case was decided and reported.
"""

import os
import random
import time
import uuid
from contextlib import contextmanager

from django.db import connection

from cases.actions.rules import _spec_of, apply_rules, backtest, breakers, current_version, save_rule
from cases.models import Case, CyberTipReport, Decision, ReviewQueue, Rule, RuleMode
from detection.models import Account, Bank, BankHash, Item, ItemKind, ItemStatus, Signal, SignalKind
from reviewconsole.audit.models import AuditEvent

CONDITIONS = [{"field": "signal.kind", "op": "eq", "value": "hash_match"},
              {"field": "bank.trust", "op": "eq", "value": "verified"},
              {"field": "match.distance", "op": "le", "value": 0}]


class _Counter:
    def __init__(self):
        self.statements = 0

    def __call__(self, execute, sql, params, many, context):
        self.statements += 1
        return execute(sql, params, many, context)


def _server_cpu():
    """CPU seconds of this connection's PostgreSQL backend so far, or None where it cannot be read."""
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def measured():
    """Yields a dict filled, on exit, with cpu, server_cpu, wall and statements of the block."""
    figures = {}
    counter = _Counter()
    server = _server_cpu()
    cpu, wall = time.process_time(), time.perf_counter()
    with connection.execute_wrapper(counter):
        yield figures
    figures["cpu"] = time.process_time() - cpu
    figures["wall"] = time.perf_counter() - wall
    after = _server_cpu()
    figures["server_cpu"] = after - server if server is not None and after is not None else None
    figures["statements"] = counter.statements


def generate(n, tag):
    """`n` open cases, each an account with one scanned image that exactly matches a verified bank entry."""
    bank = Bank.objects.create(name=f"{tag}-known", trust="verified")
    # Hash values of this run's own: the local bank keeps what earlier runs' decisions added.
    offset = random.getrandbits(96) << 20
    queue = ReviewQueue.objects.filter(senior_only=False).order_by("pk").first()
    cases = []
    for start in range(0, n, 1000):
        size = min(1000, n - start)
        numbers = range(start, start + size)
        entries = BankHash.objects.bulk_create([
            BankHash(bank=bank, hash_type="md5", value=f"{offset + i:032x}", label=f"{tag} entry {i}")
            for i in numbers])
        accounts = Account.objects.bulk_create([Account(external_id=f"{tag}-acct-{i}") for i in numbers])
        items = Item.objects.bulk_create([
            Item(account=account, kind=ItemKind.IMAGE, status=ItemStatus.SCANNED, md5=f"{offset + i:032x}",
                 sha256=f"{offset + i:064x}", external_id=f"{tag}-item-{i}")
            for i, account in zip(numbers, accounts, strict=True)])
        made = Case.objects.bulk_create([
            Case(account=account, queue=queue, priority=90, base_priority=90, summary="known material")
            for account in accounts])
        Signal.objects.bulk_create([
            Signal(item=item, account=item.account, case=case, kind=SignalKind.HASH_MATCH, detector="hash_match",
                   label=f"MD5 identical, bank {bank.name}", score=1.0, severity=90, explanation="benchmark",
                   dedupe_key=f"item:{item.pk}:bank:{bank.pk}",
                   details={"bank": bank.name, "bank_id": bank.pk, "entry_id": entry.pk, "basis": "exact",
                            "hashes": [{"type": "md5", "entry_id": entry.pk, "distance": 0, "threshold": 0}]})
            for item, case, entry in zip(items, made, entries, strict=True)])
        cases += [case.pk for case in made]
    return bank, cases


def rule_on(tag):
    rule = Rule(code=f"{tag}-rule", title=f"Decisions benchmark {tag}", breaker_per_hour=10_000_000)
    save_rule(None, rule, conditions_list=CONDITIONS, effect="apply_policy", policy_code="csam-known",
              mode=RuleMode.SHADOW, note="decisions benchmark")
    backtest(None, rule, _spec_of(current_version(rule)), days=1)
    save_rule(None, rule, conditions_list=CONDITIONS, effect="apply_policy", policy_code="csam-known",
              mode=RuleMode.ON, note="decisions benchmark: backtested")
    return rule


def run(out, decisions=1000, batch=100):
    tag = f"bd{uuid.uuid4().hex[:6]}"
    out(f"generating {decisions} open cases with a known-material match ({connection.vendor})")
    _, case_ids = generate(decisions, tag)
    rule = rule_on(tag)
    # Other rules would act too: only the benchmark's own is live while it runs.
    others = list(Rule.objects.exclude(pk=rule.pk).exclude(mode=RuleMode.OFF).values_list("pk", "mode"))
    Rule.objects.filter(pk__in=[pk for pk, _ in others]).update(mode=RuleMode.OFF)
    breakers.reset()
    try:
        apply_rules(case_ids[:1])  # warm-up: the automation account, the reason code, caches
        with measured() as figures:
            for start in range(1, len(case_ids), batch):
                apply_rules(case_ids[start:start + batch])
    finally:
        for pk, mode in others:
            Rule.objects.filter(pk=pk).update(mode=mode)
    decided = Decision.objects.filter(case__in=case_ids).count()
    reports = CyberTipReport.objects.filter(case__in=case_ids).count()
    audited = AuditEvent.objects.filter(case__in=case_ids, object_type="decision",
                                        action__startswith="case.").count()
    n = max(1, decided - 1)
    server = figures["server_cpu"]
    out(f"decided {decided} of {decisions} cases ({reports} reports, {audited} decision audit rows), "
        f"batches of {batch}")
    out(f"per decision: {figures['cpu'] / n * 1000:.1f} ms CPU here"
        + (f", {server / n * 1000:.1f} ms CPU in PostgreSQL" if server is not None else "")
        + f", {figures['wall'] / n * 1000:.1f} ms wall, {figures['statements'] / n:.1f} SQL statements")
    return {"decided": decided, "per_decision": {k: (v / n if v is not None else None) for k, v in figures.items()}}
