"""Template tags that cut user text into plain and highlighted pieces, leaving escaping to the template."""

from django import template

from detection.detectors.text import highlight_pieces

register = template.Library()


def _spans(spans):
    for span in spans or ():
        try:
            yield int(span["start"]), int(span["end"])
        except (KeyError, TypeError, ValueError):
            continue  # a malformed span in stored details is skipped, never fatal to the page


@register.simple_tag
def text_pieces(text, spans):
    """[(piece, marked)] for `text`; the template escapes every piece itself."""
    return highlight_pieces(text if isinstance(text, str) else "", list(_spans(spans)))


@register.simple_tag
def item_text_pieces(item, signals):
    """The text item's own text, cut by the spans of its text signals."""
    spans = []
    for signal in signals:
        if signal.kind == "text":
            for entry in (signal.details or {}).get("fields", ()):
                if isinstance(entry, dict) and entry.get("field") == "text":
                    spans += _spans(entry.get("spans"))
    return highlight_pieces(item.text or "", spans)
