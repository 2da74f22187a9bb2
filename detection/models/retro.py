"""Retroactive matching: the record of which new bank entries, and which actioned accounts' media,
still have to be matched against the items already stored."""

from django.db import models
from django.db.models import Q

from detection.models.banks import Bank
from detection.models.subjects import Account


class RetroMatch(models.Model):
    """Where retroactive matching of one bank stands.

    Entries with an id up to `matched_through` have been matched against every stored item;
    `requested_at` is set (in the transaction that adds entries) while more wait, and cleared by the
    run that has matched them all. The row, not Redis, says what is pending.
    """

    bank = models.OneToOneField(Bank, on_delete=models.CASCADE, related_name="retro")
    matched_through = models.BigIntegerField(default=0, help_text="Highest bank entry id matched retroactively")
    requested_at = models.DateTimeField(null=True, blank=True, help_text="Entries added and not yet matched since")
    # Bumped by every request: a run finishes only if none came in while it ran.
    requests = models.PositiveIntegerField(default=0)
    claim_token = models.CharField(max_length=32, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    runs = models.PositiveIntegerField(default=0)
    last_run_at = models.DateTimeField(null=True, blank=True)
    totals = models.JSONField(default=dict, blank=True, help_text="Running counts: entries, candidates, signals")

    class Meta:
        indexes = [models.Index(fields=["requested_at"], name="retro_pending_idx",
                                condition=Q(requested_at__isnull=False))]

    def __str__(self):
        return f"retro matching of bank {self.bank_id} through entry {self.matched_through}"


class SharedMediaRequest(models.Model):
    """An actioned account whose media is to be matched against every other account's and group's."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="+")
    # The decision that actioned the account, by id: the cases layer's row, which detection does not import.
    decision_id = models.BigIntegerField(null=True, blank=True)
    reason = models.CharField(max_length=255, blank=True)
    requested_at = models.DateTimeField(auto_now_add=True)
    claim_token = models.CharField(max_length=32, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    done_at = models.DateTimeField(null=True, blank=True)
    counts = models.JSONField(default=dict, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["account", "decision_id"], name="unique_shared_media_request")]
        indexes = [models.Index(fields=["requested_at"], name="shared_media_pending_idx",
                                condition=Q(done_at__isnull=True))]

    def __str__(self):
        return f"shared media of account {self.account_id} (decision {self.decision_id})"
