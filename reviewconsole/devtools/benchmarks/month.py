"""Benchmark: a tenth of a month of a large platform, through the API and real workers, against planted truth.

At scale 1.0: 1 M accounts, 50,000 groups, 3 M hash-only items in batches of 1000 (POST /api/v1/items/batch)
and 30,000 synthetic image files one by one (multipart POST /api/v1/items), through the Django test
client in this process, while worker subprocesses (reviewconsole.worker.ConsoleWorker, as runconsole
starts them, with the cron) scan, match, triage and run the rules. Planted in the traffic:

- rings: groups whose members share known material of a verified bank: exact copies, near copies
  (PDQ bits flipped, within the threshold), copies sent with their orientations where the known
  picture is the mirrored or rotated one, and re-encoded, resized, watermarked or mirrored files;
- retro rings: the same, of material whose hashes reach the verified bank only halfway through,
  to be found in the items already stored;
- a viral entry: one verified entry suddenly shared by many accounts at once, which the entry's
  circuit breaker is there to hand to people;
- look-alikes that must never be acted on automatically: PDQ hashes 32-40 bits from a verified entry
  (just outside the threshold; their flipped bits never overlap a near copy's, so no chain of near
  copies links them), MD5s one hex digit off, a benign picture whose hash a third-party (unverified)
  list holds by mistake ("flooding": posted by many benign accounts), and benign files.

The rule set: verified-bank exact or PDQ matches apply "csam-known" (on); any unverified-bank match
would apply it too (shadow). Time is compressed about a hundredfold, so the whole run falls inside
the breakers' one-hour window: the rule and bank floors are set to twice the planted volume (they
would otherwise stop automation after 2,000 decisions), and the entry floor to twice the most
accounts any ordinary entry is planted on, which the viral entry exceeds by half.
"""

import io
import json
import os
import resource
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from concurrent.futures import ProcessPoolExecutor
from functools import lru_cache
from pathlib import Path

import django_rq
import numpy as np
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connections
from django.db.models import Max
from django.test import Client
from django.utils import timezone
from PIL import ImageDraw
from rq.registry import StartedJobRegistry
from tqdm import tqdm

from cases.actions.rules import _spec_of, backtest, current_version, save_rule
from cases.models import (
    ApiToken,
    Breaker,
    Case,
    CyberTipReport,
    Decision,
    Enforcement,
    FiringOutcome,
    Rule,
    RuleFiring,
    RuleMode,
)
from detection.banks import create_bank, import_hashes
from detection.detectors.hashing import DIHEDRAL, digests, hash_image
from detection.models import Account, Bank, Item, ItemStatus, RetroMatch, SharedMediaRequest, Signal
from reviewconsole.devtools import synthetic

SIZES = {"accounts": 1_000_000, "groups": 50_000, "items": 3_000_000, "files": 30_000}
BATCH = 1000
SCAN_BATCH = 1000
PICTURE = (320, 240)
BENIGN_PICTURES = 997
THRESHOLD = 31
# Retroactive and shared-media jobs get a queue of their own (detection.retro.queue_name() uses it where
# it is configured), before scans and the default queue: behind a scan backlog, or the sweep's analysis
# of every new account in the default queue (hours of it at this scale), a mid-month import would wait
# for the backlog instead of its settle time. A platform would give it a worker of its own.
RETRO_QUEUE = "retro"
QUEUES = ("triage", "dispatch", RETRO_QUEUE, "scan", "classify", "default")
# The path from an item to a decision; the analysis of subjects (default) is reported, not waited for.
WATCHED_QUEUES = ("triage", "scan", RETRO_QUEUE, "classify")
WORKER = """
import sys, django
django.setup()
from django.conf import settings
from django.core.management import call_command
settings.RQ_QUEUES[sys.argv[1]] = {"URL": settings.REDIS_URL, "DEFAULT_TIMEOUT": 3600}
if sys.argv[2] == "cron":
    call_command("rqcron", "reviewconsole.cron", logging_level="WARNING")
else:
    call_command("rqworker", *sys.argv[2:], with_scheduler=True, verbosity=0)
"""

# A member's items fall within this share of the timeline (a few seconds of traffic at full scale).
BURST = 0.002
# The platform pulls the console's enforcement (GET /api/v1/enforcements) every this many batches and
# sends nothing more from the accounts it has banned.
PULL_EVERY = 5
# Item kinds of the plan (one byte each in the timeline).
BENIGN, EXACT, NEAR, ORIENTED, OUTSIDE, MD5_OFF, FLOOD, VIRAL = range(8)


class Plan:
    """The planted truth and the timeline of one run, every number drawn from one seed."""

    def __init__(self, scale, seed=20261202, tag=None):
        self.rng = rng = np.random.default_rng(seed)
        self.tag = tag or f"m{int(time.time()) % 10**6}"
        s = scale
        self.n_accounts, self.n_groups = max(2000, int(SIZES["accounts"] * s)), max(100, int(SIZES["groups"] * s))
        self.n_items, self.n_files = max(6000, int(SIZES["items"] * s)), max(60, int(SIZES["files"] * s))
        self.known = [rng.bytes(32).hex() for _ in range(max(40, int(3000 * s)))]  # verified at the start
        self.known_md5 = [rng.bytes(16).hex() for _ in self.known]
        self.later = [rng.bytes(32).hex() for _ in range(max(30, int(500 * s)))]  # verified halfway
        self.later_md5 = [rng.bytes(16).hex() for _ in self.later]
        self.meme = rng.bytes(32).hex()  # a benign picture an unverified list holds by mistake
        self.pictures = [5_000_000 + n for n in range(max(9, int(300 * s)))]  # known files, by seed
        people = rng.permutation(self.n_accounts)
        rings = max(6, int(1100 * s))
        sizes = rng.integers(20, 41, rings)
        taken = int(sizes.sum())
        self.ring_members = np.split(people[:taken], np.cumsum(sizes)[:-1])
        self.retro_rings = set(range(max(1, rings // 10)))  # their material is only in `later`
        self.ring_material = [rng.choice(len(self.later if r in self.retro_rings else self.known), 15, replace=False)
                              for r in range(rings)]
        self.viral_entry = len(self.known) - 1  # no ring uses it
        for r, material in enumerate(self.ring_material):
            if r not in self.retro_rings:
                material[material == self.viral_entry] = 0
        counts = [max(20, int(n * s)) for n in (5000, 1000, 1500)]
        start = taken
        self.outside, self.md5_off, self.flood = [], [], []
        for bucket, n in zip((self.outside, self.md5_off, self.flood), counts, strict=True):
            bucket.extend(people[start:start + n].tolist())
            start += n
        self._plant_items(people, start)

    def _plant_items(self, people, start):
        rng, n = self.rng, self.n_items
        self.kind = np.zeros(n, np.uint8)
        self.account = np.zeros(n, np.int32)
        self.group = np.full(n, -1, np.int32)
        self.entry = np.zeros(n, np.int32)
        free = np.ones(n, bool)
        per_entry = defaultdict(set)
        self.burst = {}  # ring member: where its burst starts (a share of the timeline)
        specials = []  # (class range, kind, account, group, entry)
        for r, members in enumerate(self.ring_members):
            retro = r in self.retro_rings
            for account in members.tolist():
                # A member posts in a burst (a session): once banned, the platform sends nothing more of
                # it. Retro material is mostly stored before its hashes arrive, some after.
                begin = float(rng.uniform(0.02, 0.5) if rng.random() < 0.8 else rng.uniform(0.5, 0.998)) if retro \
                    else float(rng.uniform(0, 0.998))
                when = (begin, begin + BURST)
                self.burst[account] = begin
                for _ in range(1 + rng.binomial(2, 0.5)):
                    entry = int(rng.choice(self.ring_material[r]))
                    kind = rng.choice([EXACT, NEAR, ORIENTED], p=[0.4, 0.45, 0.15])
                    specials.append((when, kind, account, r if rng.random() < 0.7 else -1,
                                     -1 - entry if retro else entry))
                    if not retro:
                        per_entry[entry].add(account)
                for _ in range(rng.poisson(2)):
                    specials.append((when, BENIGN, account, r, 0))
        busiest = max(len(a) for a in per_entry.values())
        self.entry_floor = max(10, 2 * busiest)
        self.viral = people[start:start + 3 * self.entry_floor // 2].tolist()
        self.benign_from = start + len(self.viral)
        specials += [((0.70, 0.75), VIRAL, a, -1, self.viral_entry) for a in self.viral]
        specials += [((0.0, 1.0), OUTSIDE, a, -1, int(rng.integers(len(self.known)))) for a in self.outside]
        specials += [((0.0, 1.0), MD5_OFF, a, -1, int(rng.integers(len(self.known)))) for a in self.md5_off]
        specials += [((0.0, 1.0), FLOOD, a, -1, 0) for a in self.flood]
        for (low, high), kind, account, group, entry in specials:
            while True:
                at = int(rng.integers(int(low * n), int(high * n)))
                if free[at]:
                    break
            free[at] = False
            self.kind[at], self.account[at], self.group[at], self.entry[at] = kind, account, group, entry
        benign = np.flatnonzero(free)
        pool = people[self.benign_from:]
        self.account[benign] = pool[rng.integers(0, len(pool), len(benign))]
        rings = len(self.ring_members)
        with_group = benign[rng.random(len(benign)) < 0.5]
        self.group[with_group] = rng.integers(rings, self.n_groups, len(with_group))
        self._plant_files(people)

    def _plant_files(self, people):
        """Files: known pictures re-shared by the members of every third ordinary ring, the rest benign."""
        rng = self.rng
        self.files = []  # (timeline position, account, group, picture seed or None, edit, known)
        for r, members in enumerate(self.ring_members):
            if r in self.retro_rings or r % 3:
                continue
            pictures = rng.choice(self.pictures, 3, replace=False)
            for account in members.tolist():
                if rng.random() < 1 / 3:
                    edit = str(rng.choice(["exact", "recompressed", "resized", "watermarked", "brightened",
                                           "mirrored"]))
                    at = int((self.burst[account] + rng.uniform(0, BURST)) * self.n_items)
                    self.files.append((at, account, r, int(rng.choice(pictures)), edit, True))
        pool = people[self.benign_from:]
        while len(self.files) < self.n_files:
            n = len(self.files)
            self.files.append((int(rng.integers(self.n_items)), int(pool[rng.integers(len(pool))]),
                               int(rng.integers(len(self.ring_members), self.n_groups)) if rng.random() < 0.5 else -1,
                               None, f"benign-{n}", False))
        self.files.sort(key=lambda f: f[0])

    # Who is who --------------------------------------------------------------------------------

    def account_id(self, n):
        return f"{self.tag}-a{n}"

    def account_of(self, external_id):
        """The index of one of this run's accounts, or None."""
        head, _, n = (external_id or "").rpartition("-a")
        return int(n) if head == self.tag and n.isdigit() else None

    def group_id(self, n):
        return f"{self.tag}-g{n}" if n >= 0 else None

    def positives(self):
        """Accounts that shared known material: every ring member and viral account."""
        return {int(a) for members in self.ring_members for a in members} | set(self.viral)

    def retro_accounts(self):
        """Members of the retro rings whose items were all stored before their hashes reached the bank."""
        return {int(a) for r in self.retro_rings for a in self.ring_members[r] if self.burst[int(a)] + BURST < 0.5}

    def lookalikes(self):
        return {"PDQ 32-40 bits from a verified entry": set(self.outside),
                "MD5 one hex digit off a verified entry": set(self.md5_off),
                "benign picture on the unverified list (flooding)": set(self.flood)}

    # The traffic -------------------------------------------------------------------------------

    def batch(self, start):
        """The hash-only items of timeline positions start..start+BATCH, as the platform sends them."""
        rng = np.random.default_rng([self.n_items, start])
        end = min(start + BATCH, self.n_items)
        items = []
        for at in range(start, end):
            kind, entry = int(self.kind[at]), int(self.entry[at])
            hashes = {"md5": rng.bytes(16).hex(), "pdq": rng.bytes(32).hex(), "pdq_quality": int(rng.integers(60, 101))}
            source = self.later if entry < 0 else self.known
            base = source[-1 - entry if entry < 0 else entry] if kind not in (BENIGN, FLOOD) else None
            if kind == EXACT:
                hashes["pdq"] = base
                hashes["md5"] = (self.later_md5 if entry < 0 else self.known_md5)[-1 - entry if entry < 0 else entry]
            elif kind in (NEAR, VIRAL):
                hashes["pdq"] = _flip(base, rng, int(rng.integers(1, 29)), 0, 128)
            elif kind == ORIENTED:  # the known picture is this item mirrored or turned
                turned = [rng.bytes(32).hex() for _ in DIHEDRAL]
                turned[0] = hashes["pdq"]
                turned[int(rng.integers(1, len(DIHEDRAL)))] = _flip(base, rng, int(rng.integers(0, 17)), 0, 128)
                hashes["pdq_orientations"] = turned
            elif kind == OUTSIDE:
                hashes["pdq"] = _flip(base, rng, int(rng.integers(THRESHOLD + 1, 41)), 128, 256)
            elif kind == MD5_OFF:
                digest = self.known_md5[entry]
                at_digit = int(rng.integers(32))
                hashes["md5"] = digest[:at_digit] + format((int(digest[at_digit], 16) + 1) % 16, "x") + \
                    digest[at_digit + 1:]
            elif kind == FLOOD:
                hashes["pdq"] = _flip(self.meme, rng, int(rng.integers(0, 9)), 0, 256)
            item = {"account": self.account_id(int(self.account[at])), "kind": "image", "external_id": f"i{at}",
                    "hashes": hashes}
            if self.group[at] >= 0:
                item["group"] = self.group_id(int(self.group[at]))
            items.append(item)
        return items


def _flip(hex_hash, rng, bits, low, high):
    value = int(hex_hash, 16)
    for bit in rng.choice(np.arange(low, high), bits, replace=False):
        value ^= 1 << int(bit)
    return f"{value:064x}"


# Files -----------------------------------------------------------------------------------------

def _draw(job):
    """Write one synthetic JPEG (in a pool process): a known picture as re-shared, or a benign one."""
    path, seed, edit = job
    if path.exists():
        return
    if seed is not None:
        img = synthetic.make_image(seed, size=PICTURE)
        if edit == "exact":
            data = synthetic.encode(img)
        else:
            edits = {**synthetic.EDITS, **synthetic.GEOMETRIC_EDITS}
            data = synthetic.encode(edits[edit](img), quality=85)
    else:
        # A few hundred benign pictures, each posted many times as different files (a stamp and a
        # quality of its own): drawing 30,000 distinct pictures would cost more than scanning them.
        n = int(edit.split("-")[1])
        img = _benign_picture(9_000_000 + n % BENIGN_PICTURES).copy()
        ImageDraw.Draw(img).rectangle([n % 300, n % 220, n % 300 + 12, n % 220 + 12],
                                      fill=(n * 7 % 256, n * 13 % 256, n * 31 % 256))
        data = synthetic.encode(img, quality=70 + n % 25)
    path.write_bytes(data)


@lru_cache(maxsize=BENIGN_PICTURES)
def _benign_picture(seed):
    return synthetic.make_image(seed, size=PICTURE)


def _draw_files(plan, folder, out):
    folder.mkdir(parents=True, exist_ok=True)
    jobs = [(folder / f"known-{seed}.jpg", seed, "exact") for seed in plan.pictures]
    jobs += [(folder / _file_name(f), f[3], f[4]) for f in plan.files]
    todo = [job for job in jobs if not job[0].exists()]
    started = time.perf_counter()
    connections.close_all()  # the pool is forked: no child may hold this process's database socket
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        list(tqdm(pool.map(_draw, todo, chunksize=64), total=len(todo), unit="img", desc="files"))
    out(f"month: {len(todo):,} of {len(jobs):,} synthetic JPEGs {PICTURE[0]}x{PICTURE[1]} drawn in "
        f"{time.perf_counter() - started:.0f} s (the rest cached in {folder})")


def _file_name(f):
    return f"{f[3]}-{f[4]}.jpg" if f[5] else f"{f[4]}.jpg"


# Setup -----------------------------------------------------------------------------------------

def _banks_and_rules(plan, folder):
    verified = create_bank(None, name=f"{plan.tag}-verified", source="clearinghouse",
                           description="Known material, each entry confirmed by a hotline (generated)")
    unverified = create_bank(None, name=f"{plan.tag}-third-party", source="third-party list",
                             description="A third-party list (generated), holding one benign picture by mistake")
    # No action sets a bank's trust yet (the demo data sets it the same way).
    Bank.objects.filter(pk=verified.pk).update(trust="verified")
    lines = [f"{h},pdq,known-{n}" for n, h in enumerate(plan.known)]
    lines += [f"{h},md5,known-{n}" for n, h in enumerate(plan.known_md5)]
    for seed in plan.pictures:
        data = (folder / f"known-{seed}.jpg").read_bytes()
        lines += [f"{hash_image(data).pdq},pdq,picture-{seed}", f"{digests(data)[0]},md5,picture-{seed}"]
    import_hashes(verified.name, io.StringIO("\n".join(lines)), fmt="csv")
    third = [f"{np.random.default_rng(n).bytes(32).hex()},pdq,list-{n}" for n in range(max(50, len(plan.known) // 2))]
    import_hashes(unverified.name, io.StringIO("\n".join([*third, f"{plan.meme},pdq,list-meme"])), fmt="csv")
    rules = []
    for position, (code, trust, mode, kinds) in enumerate((
            (f"{plan.tag}-verified", "verified", RuleMode.ON, ["exact", "pdq"]),
            (f"{plan.tag}-unverified", "unverified", RuleMode.SHADOW, None)), 1):
        conditions = [{"field": "signal.kind", "op": "eq", "value": "hash_match"},
                      {"field": "bank.trust", "op": "eq", "value": trust}]
        if kinds:
            conditions.append({"field": "match.kind", "op": "in", "value": kinds})
        rule = Rule(code=code, title=f"Known material, {trust} bank ({mode})", position=position)
        save_rule(None, rule, conditions_list=conditions, effect="apply_policy", policy_code="csam-known",
                  mode=RuleMode.SHADOW, note="month benchmark")
        if mode == RuleMode.ON:
            backtest(None, rule, _spec_of(current_version(rule)), days=7)
            save_rule(None, rule, conditions_list=conditions, effect="apply_policy", policy_code="csam-known",
                      mode=mode, note="month benchmark: backtested")
        rules.append(rule)
    return verified, rules


# Workers ---------------------------------------------------------------------------------------

def _start_workers(n, env):
    """`n` workers of the configured class, and the cron, as runconsole starts them. The first serves the
    retro queue before the others: one process holds the index of stored items, as a deployment gives it
    a worker of its own, rather than every worker building and refreshing a copy."""
    command = [sys.executable, "-c", WORKER, RETRO_QUEUE]
    env = env | {"DJANGO_SETTINGS_MODULE": os.environ.get("DJANGO_SETTINGS_MODULE", "reviewconsole.settings"),
                 "PYTHONPATH": str(settings.BASE_DIR), "LOG_LEVEL": "WARNING"}
    others = [queue for queue in QUEUES if queue != RETRO_QUEUE]
    workers = [subprocess.Popen([*command, *(QUEUES if number == 0 else others)], env=env, cwd=settings.BASE_DIR,
                                stdout=subprocess.DEVNULL) for number in range(n)]
    cron = subprocess.Popen([*command, "cron"], env=env, cwd=settings.BASE_DIR, stdout=subprocess.DEVNULL)
    return workers, cron


def _peak_rss_mib(pid):
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _cpu_seconds(pid):
    """User and system CPU seconds the process has used so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _stop(processes):
    for proc in processes:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in processes:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def _backlog():
    queues = {name: django_rq.get_queue(name) for name in WATCHED_QUEUES}
    jobs = sum(len(q) + StartedJobRegistry(queue=q).count for q in queues.values())
    return {"queued items": Item.objects.filter(status=ItemStatus.QUEUED).count(),
            "untriaged signals": Signal.objects.filter(triaged_at__isnull=True).count(),
            "retro requests": RetroMatch.objects.filter(requested_at__isnull=False).count(),
            "shared-media requests": SharedMediaRequest.objects.filter(done_at__isnull=True).count(),
            "jobs": jobs}


# The run ---------------------------------------------------------------------------------------

def run(out, scale=1.0, workers=2, seed=20261202, timeout=4 * 3600):
    wall = time.perf_counter()
    plan = Plan(scale, seed)
    positives, lookalikes = plan.positives(), plan.lookalikes()
    out(f"month: scale {scale:g}: {plan.n_items:,} hash-only items and {plan.n_files:,} files from up to "
        f"{plan.n_accounts:,} accounts in {plan.n_groups:,} groups; planted {len(plan.ring_members):,} rings "
        f"({len(plan.retro_rings)} of material verified only halfway), {len(positives):,} accounts sharing known "
        f"material ({len(plan.viral):,} of them on one viral entry), "
        f"{sum(len(v) for v in lookalikes.values()):,} look-alike accounts")
    folder = Path(settings.VAR_DIR) / "bench-month-files"
    _draw_files(plan, folder, out)
    verified, rules = _banks_and_rules(plan, folder)
    floors = {"BREAKER_RULE_MIN_PER_HOUR": 2 * len(positives), "BREAKER_BANK_MIN_PER_HOUR": 2 * len(positives),
              "BREAKER_ENTRY_MIN_PER_HOUR": plan.entry_floor}
    out("month: breaker floors for compressed time: " + ", ".join(f"{k}={v:,}" for k, v in floors.items()))
    django_rq.get_connection("default").flushdb()  # REDIS_URL must name a database of the benchmark's own
    settings.RQ_QUEUES[RETRO_QUEUE] = {"URL": settings.REDIS_URL, "DEFAULT_TIMEOUT": 3600}
    # Hash-only items cost the scan a claim, a match and two updates each: a claim of 1000 rather than 64
    # pays the round trips once for many (file batches still stop at the job's deadline).
    env = dict(os.environ, REDIS_URL=settings.REDIS_URL, VAR_DIR=str(settings.VAR_DIR), SCAN_BATCH=str(SCAN_BATCH),
               **{k: str(v) for k, v in floors.items()})
    procs, cron = _start_workers(workers, env)
    _, key = ApiToken.issue(f"{plan.tag}-platform")
    client = Client(HTTP_AUTHORIZATION=f"Bearer {key}", HTTP_HOST=(settings.ALLOWED_HOSTS or ["localhost"])[0])
    try:
        figures = _traffic(out, plan, client, verified, timeout)
    finally:
        rss = [_peak_rss_mib(p.pid) for p in procs]
        cpu = [_cpu_seconds(p.pid) for p in [*procs, cron]]
        _stop([*procs, cron])
        del settings.RQ_QUEUES[RETRO_QUEUE]
    figures["worker_rss"], figures["worker_cpu"] = rss, cpu
    figures["own_cpu"] = sum(resource.getrusage(resource.RUSAGE_SELF)[:2])
    figures["wall"] = time.perf_counter() - wall
    return _report(out, plan, figures, rules)


def _pull_bans(client, plan, banned, cursor):
    """The platform's side: read the console's new enforcement (the pull API) and ban those accounts."""
    while True:
        response = client.get("/api/v1/enforcements", {"status": "unconfirmed", "after": cursor}, secure=True)
        assert response.status_code == 200, response.content[:500]
        page = response.json()["results"]
        for row in page:
            if row["action"] == "ban_account" and plan.account_of(row["target"]) is not None:
                banned.add(plan.account_of(row["target"]))
        if not page:
            return cursor
        cursor = page[-1]["id"]


def _traffic(out, plan, client, verified, timeout):
    files = plan.files
    next_file, imported_at, refused = 0, None, 0
    banned, cursor, unsent = set(), 0, 0
    folder = Path(settings.VAR_DIR) / "bench-month-files"
    started_at, start = timezone.now(), time.perf_counter()
    last_status = start
    with tqdm(total=plan.n_items + plan.n_files, unit="item", desc="push") as bar:
        for number, window in enumerate(range(0, plan.n_items, BATCH)):
            if number % PULL_EVERY == 0:
                cursor = _pull_bans(client, plan, banned, cursor)
            if imported_at is None and window >= plan.n_items // 2:
                lines = [f"{h},pdq,later-{n}" for n, h in enumerate(plan.later)]
                lines += [f"{h},md5,later-{n}" for n, h in enumerate(plan.later_md5)]
                imported_at = timezone.now()
                import_hashes(verified.name, io.StringIO("\n".join(lines)), fmt="csv")
            items = [item for item in plan.batch(window) if plan.account_of(item["account"]) not in banned]
            unsent += min(BATCH, plan.n_items - window) - len(items)
            if items:
                response = client.post("/api/v1/items/batch", json.dumps({"items": items}),
                                       content_type="application/json", secure=True)
                assert response.status_code == 202, response.content[:500]
                refused += response.json()["refused"]
            bar.update(min(BATCH, plan.n_items - window))
            while next_file < len(files) and files[next_file][0] < window + BATCH:
                _, account, group, seed, edit, known = files[next_file]
                if account in banned:
                    next_file, unsent = next_file + 1, unsent + 1
                    bar.update(1)
                    continue
                data = (folder / _file_name(files[next_file])).read_bytes()
                fields = {"account": plan.account_id(account), "external_id": f"f{next_file}",
                          "file": SimpleUploadedFile(f"{next_file}.jpg", data, "image/jpeg")}
                if group >= 0:
                    fields["group"] = plan.group_id(group)
                response = client.post("/api/v1/items", fields, secure=True)
                assert response.status_code == 202, response.content[:500]
                next_file += 1
                bar.update(1)
            if time.perf_counter() - last_status > 60:
                last_status = time.perf_counter()
                tqdm.write(f"  {last_status - start:.0f} s: " + ", ".join(f"{k} {v:,}" for k, v in _backlog().items()))
    pushed = time.perf_counter() - start
    sent = plan.n_items + plan.n_files - unsent
    out(f"month: pushed {sent:,} items in {pushed:.0f} s ({sent / pushed:,.0f} items/s through the API; {refused} "
        f"refused; {unsent:,} not sent: their accounts were banned already, as the platform learnt from "
        f"GET /api/v1/enforcements every {PULL_EVERY} batches)")
    quiet, deadline = 0, time.monotonic() + timeout
    while quiet < 2 and time.monotonic() < deadline:
        time.sleep(3)
        backlog = _backlog()
        quiet = quiet + 1 if not any(backlog.values()) else 0
        if time.perf_counter() - last_status > 60:
            last_status = time.perf_counter()
            out(f"  {last_status - start:.0f} s: " + ", ".join(f"{k} {v:,}" for k, v in backlog.items()))
    drained = time.perf_counter() - start
    finished_at = max(t for t in (
        Item.objects.filter(created_at__gte=started_at).aggregate(t=Max("scanned_at"))["t"],
        Signal.objects.filter(created_at__gte=started_at).aggregate(t=Max("triaged_at"))["t"],
        RuleFiring.objects.filter(created_at__gte=started_at).aggregate(t=Max("created_at"))["t"],
        started_at) if t)
    return {"started_at": started_at, "imported_at": imported_at, "pushed": pushed, "drained": drained, "sent": sent,
            "working": (finished_at - started_at).total_seconds(), "timed_out": quiet < 2}


def _report(out, plan, figures, rules):
    positives, retro_accounts, lookalikes = plan.positives(), plan.retro_accounts(), plan.lookalikes()
    started_at = figures["started_at"]
    total = figures["sent"]
    out(f"month: end to end {total / figures['working']:,.0f} items/s ({total:,} items, "
        f"{figures['working']:.0f} s from the first request to the last scan, triage or rule firing; "
        f"drained at {figures['drained']:.0f} s{', TIMED OUT' if figures['timed_out'] else ''})")
    automatic = defaultdict(list)
    for external_id, at in Decision.objects.filter(
            rule_version__rule__in=rules, undone_at__isnull=True, rolled_back_at__isnull=True,
            case__account__isnull=False).values_list("case__account__external_id", "created_at"):
        automatic[plan.account_of(external_id)].append(at)
    automatic.pop(None, None)
    open_cases = Counter(plan.account_of(a) for a in Case.objects.filter(
        closed_at__isnull=True, created_at__gte=started_at, account__isnull=False).values_list(
        "account__external_id", flat=True))
    open_groups = Case.objects.filter(closed_at__isnull=True, created_at__gte=started_at, group__isnull=False).count()
    acted = set(automatic)
    people = set(open_cases) - {None}
    tp, fp = len(acted & positives), len(acted - positives)
    waiting = (people & positives) - acted
    later = people & acted
    missed = positives - acted - people
    out(f"month: accounts actioned automatically {len(acted):,}; planted positives {len(positives):,}: "
        f"{tp:,} acted on by the rule, {len(waiting):,} left to a person (open case, no decision), "
        f"{len(missed):,} never reached a case")
    share = len(waiting) / max(1, tp + len(waiting))
    out(f"month: of the positives that reached a case, {100 * (1 - share):.1f} % decided automatically, "
        f"{100 * share:.1f} % need a person; precision {tp / max(1, len(acted)):.4f}, recall "
        f"{tp / max(1, len(positives)):.4f} against the planted truth")
    out(f"month: accounts already actioned with a later case open for people: {len(later):,}; group cases open: "
        f"{open_groups:,}; other open account cases: {len(people - positives):,}")
    bad = 0
    for label, accounts in lookalikes.items():
        hit = accounts & acted
        bad += len(hit)
        out(f"month: look-alikes, {label}: {len(accounts):,} accounts, {len(hit)} acted on automatically, "
            f"{len(accounts & people):,} with a case open for people")
    imported_at = figures["imported_at"]
    delays = sorted((min(automatic[a]) - imported_at).total_seconds() for a in retro_accounts
                    if a in automatic and min(automatic[a]) > imported_at)
    if delays:
        out(f"month: retroactive: {len(delays):,} of the {len(retro_accounts):,} retro-ring accounts whose items "
            f"were all stored before the mid-month import of {len(plan.later):,} hashes actioned after it; from the "
            f"import: first {delays[0]:.0f} s, "
            f"median {delays[len(delays) // 2]:.0f} s, 95th percentile {delays[int(len(delays) * 0.95)]:.0f} s, "
            f"last {delays[-1]:.0f} s")
    firings = Counter(RuleFiring.objects.filter(rule__in=rules).values_list("rule__code", "outcome"))
    out("month: rule firings: " + ", ".join(f"{code.split('-', 1)[1]} {outcome} {n:,}"
                                            for (code, outcome), n in sorted(firings.items())))
    decisions = Decision.objects.filter(rule_version__rule__in=rules)
    out(f"month: automated decisions {decisions.count():,}; CyberTipline reports drafted "
        f"{CyberTipReport.objects.filter(decision__in=decisions).count():,} (queued: no NCMEC credentials here, "
        f"nothing is filed); enforcement rows {Enforcement.objects.filter(decision__in=decisions).count():,}")
    why = Counter(RuleFiring.objects.filter(rule__in=rules, outcome__in=[
        FiringOutcome.HELD_BACK, FiringOutcome.BREAKER]).values_list("why", flat=True))
    for reason, n in why.most_common(5):
        out(f"month:   left to people {n:,}: {reason}")
    breakers = list(Breaker.objects.filter(tripped_at__gte=started_at).order_by("tripped_at"))
    for breaker in breakers:
        out(f"month: breaker tripped at {(breaker.tripped_at - started_at).total_seconds():.0f} s: {breaker.reason}")
    if not breakers:
        out("month: no breaker tripped")
    viral = set(plan.viral)
    out(f"month: viral entry: {len(viral):,} accounts, {len(viral & acted):,} acted on automatically, "
        f"{len(viral & people - acted):,} handed to people")
    unanalysed = Account.objects.filter(external_id__startswith=f"{plan.tag}-a", analysed_at__isnull=True).count()
    out(f"month: accounts still waiting for their first analysis (risk and text surfaces, default queue, not "
        f"waited for): {unanalysed:,} of {Account.objects.filter(external_id__startswith=f'{plan.tag}-a').count():,}")
    cpu = [c or 0 for c in figures["worker_cpu"]]
    out(f"month: CPU: workers {sum(cpu[:-1]):,.0f} s ({1000 * sum(cpu[:-1]) / max(1, total):.2f} s per 1,000 items), "
        f"cron {cpu[-1]:,.0f} s, this process (plan, push, report) {figures['own_cpu']:,.0f} s")
    rss = ", ".join(f"{r:.0f}" for r in figures["worker_rss"] if r)
    out(f"month: wall time {figures['wall'] / 60:.1f} min in all; peak RSS: this process "
        f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB, workers {rss} MiB")
    if bad:
        raise AssertionError(f"{bad} look-alike accounts were acted on automatically")
    return {"acted": len(acted), "tp": tp, "fp": fp, "waiting": len(waiting), "missed": len(missed),
            "lookalikes_acted": bad, "retro_delays": delays, "breakers": len(breakers),
            "items_per_second": total / figures["working"]}
