"""Reporters: how much a user report weighs, from how its reporter's earlier reports turned out."""

from dataclasses import dataclass

from detection.models import Reporter

NORMAL, TRUSTED, POOR, MUTED = 1.0, 1.5, 0.5, 0.0
# A muted reporter's report of a child in danger still opens a case, at this weight: a reporter muted for
# flooding is still sometimes right, and that report is the one that must not be lost.
MUTED_CHILD_SAFETY = 0.2
# A record is judged only once there is enough of it: at least this many decided reports...
POOR_RECORD_MIN_DECIDED = 5
# ...of which fewer than this share were upheld.
POOR_RECORD_UPHELD_SHARE = 0.2


@dataclass(frozen=True)
class Weight:
    """What a new report from this reporter counts for: 0 (muted), 0.5 (poor record), 1 or 1.5 (trusted)."""

    value: float
    standing: str  # "muted", "trusted", "poor" or "normal"
    explanation: str  # one line a reviewer reads

    @property
    def muted(self):
        return self.standing == "muted"

    @property
    def opens_case(self):
        """Whether the report may open a case by itself (a muted reporter's may not, but for a child)."""
        return self.value > 0


def _record(reporter):
    if reporter is None or not reporter.reports:
        return "no earlier reports decided"
    return f"{reporter.upheld} of {reporter.reports} upheld"


def standing_of(reporter, *, child_safety=False):
    """The weight for a Reporter row (or None: a reporter never seen before weighs normally) of a report
    for a reason that is, or is not, about a child's safety."""
    record = f"reporter's earlier reports: {_record(reporter)}"
    if reporter is not None and reporter.muted_at:
        if child_safety:
            return Weight(MUTED_CHILD_SAFETY, "muted", f"reporter muted by a senior; {record}; a report about a "
                                                       "child's safety still opens a case, at the lowest weight")
        return Weight(MUTED, "muted", f"reporter muted by a senior; {record}; weighs nothing and opens no case alone")
    if reporter is not None and reporter.trusted_at:
        return Weight(TRUSTED, "trusted", f"trusted flagger; {record}; weighs more")
    if (reporter is not None and reporter.reports >= POOR_RECORD_MIN_DECIDED
            and reporter.upheld < POOR_RECORD_UPHELD_SHARE * reporter.reports):
        return Weight(POOR, "poor", f"{record}; weighs less")
    return Weight(NORMAL, "normal", f"{record}; weighs normally")


def report_weight(reporter_external_id, *, child_safety=False):
    """What a new user report from this reporter (the platform's id for them) weighs, and why."""
    return standing_of(Reporter.objects.filter(external_id=reporter_external_id).first(), child_safety=child_safety)
