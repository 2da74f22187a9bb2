"""Every state change of cases goes through a function in this package: atomic, audited, idempotent.

One module per domain (triage, claims, decisions, qa, evidence, preservation, legal requests, ...).
Each action writes its audit row in the same transaction as the change and schedules its side
effects (jobs, webhooks) to run after the commit.
"""


class ActionError(Exception):
    """The action cannot be taken; the message says why, in words for the reviewer."""


