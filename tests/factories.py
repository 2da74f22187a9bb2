"""Build real rows through the real code paths (intake, scan, triage), without a queue."""

import io
from functools import lru_cache

from cases.actions.triage import attach_signals
from detection import intake, matching
from detection.banks import import_hashes
from detection.detectors.hashing import digests, hash_image
from detection.jobs.scan import scan_item
from detection.models import Signal
from reviewconsole.devtools import synthetic


@lru_cache(maxsize=256)
def encoded(seed, edit=None):
    """A synthetic JPEG, made once per test run (the images are deterministic)."""
    img = synthetic.make_image(seed)
    return synthetic.encode(synthetic.EDITS[edit](img) if edit else img)


@lru_cache(maxsize=256)
def hash_values(seed):
    data = encoded(seed)
    hashes = hash_image(data)
    return {"pdq": hashes.pdq, "phash": hashes.phash, "dhash": hashes.dhash, "md5": digests(data)[0]}


def known_bank(seeds, name="known", types=("pdq", "phash", "dhash", "md5")):
    lines = ["hash,type,label"]
    for seed in seeds:
        values = hash_values(seed)
        lines += [f"{values[t]},{t},seed-{seed}" for t in types]
    summary = import_hashes(name, io.StringIO("\n".join(lines)), fmt="csv")
    matching.invalidate()  # this process's index; workers notice within INDEX_CHECK_SECONDS
    return summary


def scanned_item(data, account="acct-1", group=None, **kwargs):
    item = intake.submit_file(data, account_id=account, group_id=group, **kwargs)
    scan_item(item.pk)
    item.refresh_from_db()
    return item


def triage_all():
    return attach_signals(list(Signal.objects.filter(triaged_at__isnull=True).values_list("pk", flat=True)))


def case_with_match(seed=1, account="acct-1", edit="watermarked"):
    known_bank([seed])
    item = scanned_item(encoded(seed, edit), account=account)
    (case,) = triage_all()
    return case, item


def policy(code, *, category="other_violation", ban="none", remove="none", **fields):
    """A policy for a test: by default one that does nothing but what the test names."""
    from cases.models import Policy

    found, _ = Policy.objects.get_or_create(code=code, defaults={
        "title": code.replace("-", " ").capitalize(), "category": category, "ban": ban, "remove": remove, **fields})
    return found


def ban_only():
    """A platform-rule ban that neither removes nor reports (say, a spam account)."""
    return policy("spam-account", ban="subject")


def remove_only():
    return policy("rule-breaking-content", remove="flagged")
