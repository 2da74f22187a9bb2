"""Template context: the undo offer that follows a reviewer for a few seconds after a decision."""

import time


def undo_offer(request):
    offer = request.session.get("undo") if hasattr(request, "session") else None
    if not offer:
        return {}
    remaining = offer["until"] - time.time()
    if remaining <= 0:
        return {}
    return {"undo_offer": {**offer, "remaining": int(remaining) + 1}}
