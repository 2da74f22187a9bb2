"""JSON log lines for production: one object a line, for journald and whatever ships the logs on."""

import json
import logging
from datetime import UTC, datetime

# What every LogRecord carries. Anything else on a record came in through `extra=` (Django's request
# logger adds `status_code` and `request`, for instance) and becomes a field of its own.
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """time (UTC, ISO 8601), level, logger, pid, message; `exc` with the traceback when there is one,
    `stack` with stack_info; then the record's extra fields. Values JSON cannot hold are logged as str()."""

    def format(self, record):
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        extra = {key: value for key, value in vars(record).items()
                 if key not in _RECORD_ATTRIBUTES and key not in entry}
        try:
            return json.dumps(entry | extra, default=str, ensure_ascii=False)
        except ValueError:  # an extra that refers to itself: its str() will do
            return json.dumps(entry | {key: str(value) for key, value in extra.items()}, ensure_ascii=False)
