"""What the platform sent and what detection found: subjects, items, user reports, signals, banks, terms."""

from detection.models.banks import (
    HEX_LENGTHS,
    Bank,
    BankHash,
    BankHashOutcome,
    BankImport,
    BankKind,
    BankTrust,
    EntryOutcome,
    EntryStatus,
    HashExchange,
    HashType,
    ImportStatus,
    normalise_hash,
)
from detection.models.items import EvidenceOnHold, Item, ItemKind, ItemQuerySet, ItemStatus, held_now
from detection.models.reports import Reporter, UserReport
from detection.models.retro import RetroMatch, SharedMediaRequest
from detection.models.signals import Signal, SignalKind
from detection.models.subjects import Account, AccountLink, Group, Membership, SubjectStatus
from detection.models.terms import TermCategory, TermMatch, TextTerm

__all__ = [
    "HEX_LENGTHS", "Account", "AccountLink", "Bank", "BankHash", "BankHashOutcome", "BankImport", "BankKind",
    "BankTrust", "EntryOutcome", "EntryStatus", "EvidenceOnHold", "Group", "HashExchange", "HashType", "ImportStatus",
    "Item", "ItemKind", "ItemQuerySet", "ItemStatus", "Membership", "Reporter", "RetroMatch", "SharedMediaRequest",
    "Signal", "SignalKind", "SubjectStatus", "TermCategory", "TermMatch", "TextTerm", "UserReport", "held_now",
    "normalise_hash",
]
