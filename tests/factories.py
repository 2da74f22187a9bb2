"""Build real rows through the real code paths (intake, scan, triage), without a queue."""

import io

from cases import intake
from cases.actions import attach_signals
from cases.models import Signal
from detection import matching, synthetic
from detection.banks import import_hashes
from detection.hashing import digests, hash_image
from detection.jobs import scan_item


def known_bank(seeds, name="known", types=("pdq", "phash", "dhash", "md5")):
    lines = ["hash,type,label"]
    for seed in seeds:
        data = synthetic.encode(synthetic.make_image(seed))
        hashes = hash_image(data)
        values = {"pdq": hashes.pdq, "phash": hashes.phash, "dhash": hashes.dhash, "md5": digests(data)[0]}
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
    data = synthetic.encode(synthetic.EDITS[edit](synthetic.make_image(seed)) if edit else synthetic.make_image(seed))
    item = scanned_item(data, account=account)
    (case,) = triage_all()
    return case, item
