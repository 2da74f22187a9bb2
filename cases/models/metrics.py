"""Daily rollups behind the metrics dashboard."""

from django.db import models


class DailyMetric(models.Model):
    """One figure for one day (UTC), rolled up from the live tables by `cases.metrics`.

    The dashboard reads these rows only, so it stays fast however many items and cases there
    are; the rollup can be recomputed for any day at any time (it is derived, never the record).
    """

    day = models.DateField()
    metric = models.CharField(max_length=32)
    key = models.CharField(max_length=100, blank=True, help_text="e.g. the bank, queue or action")
    value = models.FloatField()

    class Meta:
        ordering = ["day", "metric", "key"]
        constraints = [models.UniqueConstraint(fields=["day", "metric", "key"], name="one_daily_metric")]
        indexes = [models.Index(fields=["metric", "day"], name="daily_metric_idx")]

    def __str__(self):
        return f"{self.day} {self.metric}[{self.key}] = {self.value:g}"


# Law-enforcement requests -----------------------------------------------------------------------
