"""Build CyberTipline `<report>` and `<fileDetails>` documents, and check them before sending.

Children must appear in schema order (NCMEC answers 4100 otherwise), so the builder emits them in
the orders below and `validate()` checks any document against the same tables, plus required
elements and allowed values. Pure functions of the data handed in; the rows are read by `gather`.

The rules NCMEC's documentation states and its schema does not check are kept when building:
every text and attribute value is XML 1.0 character data (`_add`, the one way text enters a
document); emails are well formed and at most 255 characters, phones at most 50, identifiers and
names at most 255; times are ISO 8601 with an offset and never in the future; an escalation is
never blank. A value left out or shortened says so in the document's additionalInfo. `validate()`
checks the same rules, so a document that breaks one is never sent (and the fake service refuses it).
"""

import hashlib
import ipaddress
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urlsplit
from xml.etree import ElementTree as ET

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.utils import timezone

from cases.models import INCIDENT_TYPES

SCHEMA_URL = "https://report.cybertip.org/ispws/xsd"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
REPORT_ANNOTATIONS = ["sextortion", "csamSolicitation", "minorToMinorInteraction", "spam",
                      "sadisticOnlineExploitation"]
FILE_ANNOTATIONS = ["animeDrawingVirtualHentai", "potentialMeme", "viral", "possibleSelfProduction", "physicalHarm",
                    "violenceGore", "bestiality", "liveStreaming", "infant", "generativeAi"]
CLASSIFICATIONS = ["A1", "A2", "B1", "B2"]
IP_EVENTS = ["Login", "Registration", "Purchase", "Upload", "Other", "Unknown"]

# Schema order of the children of each element we emit (absent ones are skipped).
ORDER = {
    "report": ["batchedReport", "incidentSummary", "internetDetails", "lawEnforcement", "reporter",
               "personOrUserReported", "intendedRecipient", "victim", "additionalInfo"],
    "incidentSummary": ["incidentType", "platform", "escalateToHighPriority", "reportAnnotations",
                        "incidentDateTime", "incidentDateTimeDescription"],
    "reportAnnotations": REPORT_ANNOTATIONS,
    "chatImIncident": ["chatClient", "chatRoomName", "content", "additionalInfo"],
    "reporter": ["reportingPerson", "contactPerson", "companyTemplate", "termsOfService", "legalURL"],
    "reportingPerson": ["firstName", "lastName", "phone", "email", "address", "age", "dateOfBirth"],
    "personOrUserReportedPerson": ["firstName", "lastName", "phone", "email", "address", "age", "dateOfBirth"],
    "personOrUserReported": ["personOrUserReportedPerson", "vehicleDescription", "espIdentifier", "espService",
                             "compromisedAccount", "screenName", "displayName", "profileUrl", "profileBio",
                             "ipCaptureEvent", "deviceId", "thirdPartyUserReported", "priorCTReports",
                             "groupIdentifier", "accountTemporarilyDisabled", "accountPermanentlyDisabled",
                             "estimatedLocation", "allEmailsReported", "associatedAccount", "additionalInfo"],
    "victim": ["victimPerson", "espIdentifier", "espService", "compromisedAccount", "screenName", "displayName",
               "profileUrl", "profileBio", "ipCaptureEvent", "deviceId", "schoolName", "priorCTReports",
               "accountTemporarilyDisabled", "accountPermanentlyDisabled", "estimatedLocation", "allEmailsReported",
               "associatedAccount", "additionalInfo"],
    "ipCaptureEvent": ["ipAddress", "eventName", "dateTime", "possibleProxy", "port"],
    "fileDetails": ["reportId", "fileId", "fileName", "originalFileName", "uploadedToEspTimestamp",
                    "locationOfFile", "fileViewedByEsp", "exifViewedByEsp", "publiclyAvailable", "fileRelevance",
                    "fileAnnotations", "industryClassification", "originalFileHash", "ipCaptureEvent", "deviceId",
                    "details", "additionalInfo"],
    "fileAnnotations": FILE_ANNOTATIONS,
    "nameValuePair": ["name", "value"],
}
REQUIRED = {
    "report": ["incidentSummary", "internetDetails", "reporter"],
    "incidentSummary": ["incidentType", "incidentDateTime"],
    "reporter": ["reportingPerson"],
    "reportingPerson": ["email"],
    "ipCaptureEvent": ["ipAddress"],
    "fileDetails": ["reportId", "fileId"],
}
INTERNET_DETAIL_KINDS = ["webPageIncident", "emailIncident", "newsgroupIncident", "chatImIncident",
                         "onlineGamingIncident", "cellPhoneIncident", "nonInternetIncident", "peer2peerIncident"]

# NCMEC's limits (documentation, not schema).
MAX_EMAIL = 255
MAX_PHONE = 50
MAX_NAME = 255  # identifiers and names
NAME_TAGS = {"espIdentifier", "espService", "screenName", "displayName", "groupIdentifier", "firstName", "lastName",
             "chatClient", "chatRoomName", "platform", "fileName", "originalFileName"}
TIME_TAGS = {"incidentDateTime", "uploadedToEspTimestamp", "dateTime"}  # dateTime: of an ipCaptureEvent
PLACEHOLDER_REPORTER_EMAIL = "safety@example.org"
PRODUCTION_HOST = "report.cybertip.org"

# Not XML 1.0 characters: C0 controls other than tab, newline and carriage return, lone surrogates,
# U+FFFE and U+FFFF. Vertical tab and form feed become a space (they separate words); the others
# become U+FFFD, so that nothing is silently joined (an identifier stays visibly altered).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


@dataclass
class Upload:
    """One intake event of the reported user (a file or a message), for ipCaptureEvent."""

    ip: str
    at: object = None
    event: str = "Upload"


@dataclass
class HashOnlyItem:
    """A file of the report that the platform hashed at its edge: no bytes are held, so none are
    uploaded, and its hashes are told in the report's additionalInfo instead of a fileDetails."""

    item_id: int
    kind: str
    uploaded_at: object = None
    md5: str = ""
    sha256: str = ""
    pdq: str = ""
    pdq_quality: object = None
    frames: list = field(default_factory=list)  # [{"t", "pdq", "quality"}], vPDQ
    matches: list = field(default_factory=list)  # what matched, in the signals' words


# Frame hashes quoted in a hash-only item's paragraph; the rest are counted.
HASH_ONLY_FRAMES = 16


@dataclass
class ReportData:
    incident_type: str
    incident_at: object
    platform: str
    reporter_first_name: str
    reporter_last_name: str
    reporter_email: str
    company_template: str = ""
    legal_url: str = ""
    escalate_reason: str = ""
    annotations: list = field(default_factory=list)
    room_name: str = ""
    esp_identifier: str = ""
    screen_name: str = ""
    display_name: str = ""
    profile_bio: str = ""
    emails: list = field(default_factory=list)
    phones: list = field(default_factory=list)
    uploads: list = field(default_factory=list)
    group_identifier: str = ""
    prior_reports: list = field(default_factory=list)  # earlier NCMEC report ids on this person
    disabled_at: object = None
    disabled_until: object = None
    additional_info: str = ""
    notes: list = field(default_factory=list)  # more paragraphs for additionalInfo
    victims: list = field(default_factory=list)  # Victim rows: a child on the platform who was harmed
    hash_only: list = field(default_factory=list)  # HashOnlyItem: files reported by their hashes alone
    now: object = None  # the builder's clock (default: now); no time sent is later than this


@dataclass
class Victim:
    esp_identifier: str
    screen_name: str = ""
    display_name: str = ""
    age_band: str = ""


@dataclass
class FileData:
    report_id: str
    file_id: str
    file_name: str
    original_name: str
    uploaded_at: object
    viewed: bool
    publicly_available: object
    classification: str
    annotations: list
    md5: str
    sha1: str
    sha256: str
    pdq: str = ""
    upload_ip: str = ""
    notes: list = field(default_factory=list)  # each one an additionalInfo of the file
    now: object = None


def xml_text(value):
    """`value` as XML 1.0 character data (see _NOT_XML). Same length as `value`."""
    return _NOT_XML.sub(lambda m: " " if m.group() in "\x0b\x0c" else "\ufffd", value)


def _value(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    return xml_text(str(value))


def _add(parent, tag, text=None, **attrs):
    """The one way text enters a document: every text and attribute value is made XML 1.0 here."""
    child = ET.SubElement(parent, tag, {k: _value(v) for k, v in attrs.items() if v is not None})
    if text is not None:
        child.text = _value(text)
    return child


def _blank(value):
    return not xml_text(value or "").replace("\ufffd", "").strip()


def _aware(moment):
    return timezone.make_aware(moment, UTC) if timezone.is_naive(moment) else moment


def _iso(moment):
    return _aware(moment).isoformat(timespec="seconds")


def _past(moment, now):
    """No time we send is later than now: a platform clock ahead of ours must not make NCMEC refuse."""
    return min(_aware(moment), now)


def _clip(value, what, notes, limit=MAX_NAME):
    value = "" if value is None else str(value)
    if len(value) > limit:
        notes.append(f"{what} was cut to its first {limit} of {len(value)} characters (NCMEC's limit).")
        return value[:limit]
    return value


def _quoted(value, limit=MAX_NAME):
    value = str(value)
    return repr(value if len(value) <= limit else value[:limit] + "…")


def email_problem(value):
    """Why `value` may not go in an <email> (well formed, at most 255 characters), or None."""
    value = (value or "").strip()
    if not value:
        return "empty"
    if len(value) > MAX_EMAIL:
        return f"longer than {MAX_EMAIL} characters"
    try:
        validate_email(value)
    except ValidationError:
        return "not a well-formed email address"
    return None


def _emails(values, notes):
    kept = []
    for value in values:
        if _blank(value):
            continue
        problem = email_problem(value)
        if problem:
            notes.append(f"An email address the platform holds for the reported user was left out of <email>, "
                         f"being {problem}: {_quoted(value)}.")
        elif value.strip() not in kept:
            kept.append(value.strip())
    return kept


def _phones(values, notes):
    kept = []
    for phone in (str(v or "").strip() for v in values):
        if not phone:
            continue
        if len(phone) > MAX_PHONE:
            notes.append(f"A phone number the platform holds for the reported user was left out of <phone>, "
                         f"being longer than {MAX_PHONE} characters: {_quoted(phone)}.")
        elif phone not in kept:
            kept.append(phone)
    return kept


def _ip(value):
    try:
        return str(ipaddress.ip_address(str(value or "").strip()))
    except ValueError:
        return None


def _flags(parent, tag, names):
    if names:
        holder = _add(parent, tag)
        for name in ORDER[tag]:
            if name in names:
                _add(holder, name)


def _ip_event(parent, upload, now, notes):
    ip = _ip(upload.ip)
    if ip is None:
        notes.append(f"An IP address recorded by the platform is not a valid address and was left out: "
                     f"{_quoted(upload.ip, 64)}.")
        return
    capture = _add(parent, "ipCaptureEvent")
    _add(capture, "ipAddress", ip)
    _add(capture, "eventName", upload.event if upload.event in IP_EVENTS else "Unknown")
    if upload.at:
        _add(capture, "dateTime", _iso(_past(upload.at, now)))


def _serialise(root):
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def report_xml(data):
    now = _aware(data.now or timezone.now())
    notes = []
    root = ET.Element("report", {"xmlns:xsi": XSI, "xsi:noNamespaceSchemaLocation": SCHEMA_URL})
    summary = _add(root, "incidentSummary")
    _add(summary, "incidentType", data.incident_type)
    platform = _clip(data.platform, "platform", [])
    _add(summary, "platform", platform)
    if not _blank(data.escalate_reason):
        _add(summary, "escalateToHighPriority", data.escalate_reason.strip())
    _flags(summary, "reportAnnotations", data.annotations)
    _add(summary, "incidentDateTime", _iso(_past(data.incident_at or now, now)))
    chat = _add(_add(root, "internetDetails"), "chatImIncident")
    _add(chat, "chatClient", platform)
    if data.room_name:
        _add(chat, "chatRoomName", _clip(data.room_name, "chatRoomName (the group's name)", notes))
    reporter = _add(root, "reporter")
    person = _add(reporter, "reportingPerson")
    _add(person, "firstName", _clip(data.reporter_first_name, "firstName", []))
    _add(person, "lastName", _clip(data.reporter_last_name, "lastName", []))
    if email_problem(data.reporter_email) is None:  # otherwise left out, and validate() refuses the document
        _add(person, "email", data.reporter_email.strip())
    if data.company_template:
        _add(reporter, "companyTemplate", data.company_template)
    if data.legal_url:
        _add(reporter, "legalURL", data.legal_url)
    if data.esp_identifier:
        reported = _add(root, "personOrUserReported")
        phones, emails = _phones(data.phones, notes), _emails(data.emails, notes)
        if emails or phones:
            who = _add(reported, "personOrUserReportedPerson")
            for phone in phones:
                _add(who, "phone", phone)
            for email in emails:
                _add(who, "email", email)
        _add(reported, "espIdentifier", _clip(data.esp_identifier, "espIdentifier", notes))
        _add(reported, "espService", platform)
        if data.screen_name:
            _add(reported, "screenName", _clip(data.screen_name, "screenName", notes))
        if data.display_name:
            _add(reported, "displayName", _clip(data.display_name, "displayName", notes))
        if data.profile_bio:
            _add(reported, "profileBio", data.profile_bio)
        for upload in data.uploads:
            _ip_event(reported, upload, now, notes)
        for prior in dict.fromkeys(str(p).strip() for p in data.prior_reports):
            if prior.isdigit():  # NCMEC report ids are numbers
                _add(reported, "priorCTReports", prior)
        if data.group_identifier:
            _add(reported, "groupIdentifier", _clip(data.group_identifier, "groupIdentifier", notes))
        if data.disabled_at and data.disabled_until:
            _add(reported, "accountTemporarilyDisabled", True, disabledDate=_iso(_past(data.disabled_at, now)),
                 reenabledDate=_iso(data.disabled_until))
        elif data.disabled_at:
            _add(reported, "accountPermanentlyDisabled", True, disabledDate=_iso(_past(data.disabled_at, now)))
    for victim in data.victims:
        element = _add(root, "victim")
        _add(element, "espIdentifier", _clip(victim.esp_identifier, "espIdentifier", notes))
        _add(element, "espService", platform)
        if victim.screen_name:
            _add(element, "screenName", _clip(victim.screen_name, "screenName", notes))
        if victim.display_name:
            _add(element, "displayName", _clip(victim.display_name, "displayName", notes))
        if victim.age_band:
            _add(element, "additionalInfo", f"Age band the platform holds for this account: {victim.age_band}")
    hashed = [hash_only_paragraph(entry, now) for entry in data.hash_only]
    paragraphs = [p for p in [data.additional_info, *data.notes, *hashed, *notes] if not _blank(p)]
    if paragraphs:
        _add(root, "additionalInfo", "\n\n".join(paragraphs))
    return _serialise(root)


def hash_only_paragraph(entry, now=None):
    """A hash-only file in words and hex: what fileDetails would have carried, had there been bytes."""
    now = _aware(now or timezone.now())
    when = f", uploaded {_iso(_past(entry.uploaded_at, now))}" if entry.uploaded_at else ""
    lines = [f"Item {entry.item_id} ({entry.kind}{when}): the platform hashed this file on its own systems and "
             "sent only its hashes. The provider holds no copy of it, none is uploaded with this report, and no "
             "one here has viewed it."]
    hashes = [f"{name} {value}" for name, value in (("MD5", entry.md5), ("SHA-256", entry.sha256)) if value]
    if entry.pdq:
        hashes.append(f"PDQ {entry.pdq}" + (f" (quality {entry.pdq_quality})" if entry.pdq_quality is not None
                                            else ""))
    if hashes:
        lines.append("Hashes: " + "; ".join(hashes) + ".")
    if entry.frames:
        shown = entry.frames[:HASH_ONLY_FRAMES]
        more = len(entry.frames) - len(shown)
        lines.append(f"vPDQ frame hashes ({len(entry.frames)} frames; seconds: PDQ, quality): "
                     + "; ".join(f"{frame['t']:g}: {frame['pdq']}, {frame['quality']}" for frame in shown)
                     + (f"; and {more} more." if more else "."))
    if entry.matches:
        lines.append("Matched: " + "; ".join(entry.matches) + ".")
    return "\n".join(lines)


def file_details_xml(data):
    now = _aware(data.now or timezone.now())
    notes = []
    root = ET.Element("fileDetails", {"xmlns:xsi": XSI, "xsi:noNamespaceSchemaLocation": SCHEMA_URL})
    _add(root, "reportId", data.report_id)
    _add(root, "fileId", data.file_id)
    _add(root, "fileName", _clip(data.file_name, "fileName", notes))
    if data.original_name:
        _add(root, "originalFileName", _clip(data.original_name, "originalFileName", notes))
    if data.uploaded_at:
        _add(root, "uploadedToEspTimestamp", _iso(_past(data.uploaded_at, now)))
    _add(root, "fileViewedByEsp", data.viewed)
    _add(root, "exifViewedByEsp", False)  # renditions are re-encoded: nobody here sees EXIF
    if data.publicly_available is not None:
        _add(root, "publiclyAvailable", data.publicly_available)
    _add(root, "fileRelevance", "Reported")
    _flags(root, "fileAnnotations", data.annotations)
    if data.classification:
        _add(root, "industryClassification", data.classification)
    for hash_type, value in (("MD5", data.md5), ("SHA1", data.sha1), ("SHA256", data.sha256)):
        _add(root, "originalFileHash", value, hashType=hash_type)
    if data.upload_ip:
        _ip_event(root, Upload(ip=data.upload_ip, at=data.uploaded_at), now, notes)
    if data.pdq:
        details = _add(root, "details", type="HASH")
        pair = _add(details, "nameValuePair")
        _add(pair, "name", "PDQ")
        _add(pair, "value", data.pdq)
    for note in [*data.notes, *notes]:
        if not _blank(note):
            _add(root, "additionalInfo", note)
    return _serialise(root)


def validate(document):
    """Problems with a report or fileDetails document, in the words NCMEC's 4100 would use."""
    try:
        root = ET.fromstring(document)
    except ET.ParseError as exc:
        return [f"malformed XML: {exc}"]
    problems = []
    for element in root.iter():
        tags = [child.tag for child in element]
        order = ORDER.get(element.tag)
        if order:
            unknown = [t for t in tags if t not in order]
            problems += [f"<{element.tag}> does not allow <{t}>" for t in unknown]
            ranks = [order.index(t) for t in tags if t in order]
            if ranks != sorted(ranks):
                problems.append(f"children of <{element.tag}> out of schema order: {', '.join(tags)}")
        for required in REQUIRED.get(element.tag, []):
            if required not in tags:
                problems.append(f"<{element.tag}> requires <{required}>")
    if root.tag == "report":
        incident = root.findtext("incidentSummary/incidentType")
        if incident is not None and incident not in INCIDENT_TYPES:
            problems.append(f"incidentType {incident!r} is not one of NCMEC's incident types")
        for details in root.findall("internetDetails"):
            kinds = [child.tag for child in details]
            if len(kinds) != 1 or kinds[0] not in INTERNET_DETAIL_KINDS:
                problems.append("each <internetDetails> holds exactly one incident kind")
    if root.tag == "fileDetails":
        if root.findtext("exifViewedByEsp") == "true" and root.findtext("fileViewedByEsp") != "true":
            problems.append("exifViewedByEsp true requires fileViewedByEsp true")
        classification = root.findtext("industryClassification")
        if classification is not None and classification not in CLASSIFICATIONS:
            problems.append(f"industryClassification {classification!r} is not A1, A2, B1 or B2")
        relevance = root.findtext("fileRelevance") or "Reported"
        if relevance != "Reported" and (classification or root.find("fileAnnotations") is not None):
            problems.append("only Reported files carry a classification or annotations")
    for capture in root.iter("ipCaptureEvent"):
        event = capture.findtext("eventName")
        if event is not None and event not in IP_EVENTS:
            problems.append(f"ipCaptureEvent eventName {event!r} is not allowed")
    return problems + _documented_rules(root)


def _documented_rules(root):
    """The rules NCMEC's documentation states that its schema does not check (refused at submit)."""
    problems = []
    now = timezone.now()
    for element in root.iter():
        tag, text = element.tag, element.text or ""
        if tag == "email" and email_problem(text):
            problems.append(f"<email> {_quoted(text, 60)} is {email_problem(text)}")
        elif tag == "phone" and len(text.strip()) > MAX_PHONE:
            problems.append(f"<phone> is longer than {MAX_PHONE} characters")
        elif tag in NAME_TAGS and len(text) > MAX_NAME:
            problems.append(f"<{tag}> is longer than {MAX_NAME} characters")
        elif tag in TIME_TAGS:
            problem = _time_problem(text, now)
            if problem:
                problems.append(f"<{tag}> {_quoted(text, 40)} {problem}")
        elif tag == "escalateToHighPriority" and not text.strip():
            problems.append("<escalateToHighPriority> is blank: give the reason, or leave the element out")
        elif tag == "priorCTReports" and not text.strip().isdigit():
            problems.append(f"<priorCTReports> {_quoted(text, 40)} is not a report id")
    return problems


def _time_problem(text, now):
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        return "is not an ISO 8601 date and time"
    if moment.tzinfo is None:
        return "has no UTC offset"
    if moment > now:
        return "is in the future"
    return None


def hashes_of(data):
    return hashlib.md5(data).hexdigest(), hashlib.sha1(data).hexdigest(), hashlib.sha256(data).hexdigest()


def sends_to_production():
    """Whether a filing now would be a real one: production settings, or NCMEC's production service."""
    production_settings = not (settings.DEBUG or getattr(settings, "TESTING", False))
    return production_settings or urlsplit(settings.CYBERTIP_URL).hostname == PRODUCTION_HOST


def reporter_email_problem(email=None, *, production=None):
    """Why the configured reporter email may not go in a report, or None.

    NCMEC and law enforcement write to this address about the report: it must be a real one. The
    placeholder default is refused for production (settings, or NCMEC's production service)."""
    email = settings.CYBERTIP_REPORTER_EMAIL if email is None else email
    if not (email or "").strip():
        return "CYBERTIP_REPORTER_EMAIL is empty: NCMEC needs the reporting person's email address"
    problem = email_problem(email)
    if problem:
        return f"CYBERTIP_REPORTER_EMAIL {_quoted(email, 80)} is {problem}"
    production = sends_to_production() if production is None else production
    if production and email.strip().lower() == PLACEHOLDER_REPORTER_EMAIL:
        return (f"CYBERTIP_REPORTER_EMAIL is still the placeholder {PLACEHOLDER_REPORTER_EMAIL}: set the address "
                f"NCMEC and law enforcement should write to about reports")
    return None


def reporter_settings():
    return {
        "platform": settings.CYBERTIP_PLATFORM,
        "reporter_first_name": settings.CYBERTIP_REPORTER_FIRST_NAME,
        "reporter_last_name": settings.CYBERTIP_REPORTER_LAST_NAME,
        "reporter_email": settings.CYBERTIP_REPORTER_EMAIL,
        "company_template": settings.CYBERTIP_COMPANY_TEMPLATE,
        "legal_url": settings.CYBERTIP_LEGAL_URL,
    }
