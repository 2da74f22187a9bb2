"""The audit log: one append-only row for everything anyone (or anything) does.

`recorder.audit(...)` writes a row, `events.Event` names every kind of row. Every action in the
console calls it inside its own transaction, so the row and the change commit together.
"""
