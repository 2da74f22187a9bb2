"""Template filters for the metrics pages."""

from django import template

from cases.web.charts import duration as _duration

register = template.Library()


@register.filter
def duration(seconds):
    return _duration(seconds)
