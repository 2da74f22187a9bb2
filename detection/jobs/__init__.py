"""Detection jobs (RQ): each takes ids or claims rows from the database, calls pure detectors, writes signals."""
