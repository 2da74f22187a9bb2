"""Build CyberTipline `<report>` and `<fileDetails>` documents, and check them before sending.

Children must appear in schema order (NCMEC answers 4100 otherwise), so the builder emits them in
the orders below and `validate()` checks any document against the same tables, plus required
elements and allowed values. Pure functions of the data handed in; the rows are read by `gather`.
"""

import hashlib
from dataclasses import dataclass, field
from xml.etree import ElementTree as ET

from django.conf import settings

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


@dataclass
class Upload:
    """One intake event of the reported user, for ipCaptureEvent."""

    ip: str
    at: object = None


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
    disabled_at: object = None
    disabled_until: object = None
    additional_info: str = ""


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


def _iso(moment):
    return moment.isoformat(timespec="seconds")


def _add(parent, tag, text=None, **attrs):
    child = ET.SubElement(parent, tag, {k: str(v) for k, v in attrs.items() if v is not None})
    if text is not None:
        child.text = str(text).lower() if isinstance(text, bool) else str(text)
    return child


def _flags(parent, tag, names):
    if names:
        holder = _add(parent, tag)
        for name in ORDER[tag]:
            if name in names:
                _add(holder, name)


def _ip_event(parent, ip, at, event="Upload"):
    capture = _add(parent, "ipCaptureEvent")
    _add(capture, "ipAddress", ip)
    _add(capture, "eventName", event)
    if at:
        _add(capture, "dateTime", _iso(at))


def _serialise(root):
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def report_xml(data):
    root = ET.Element("report", {"xmlns:xsi": XSI, "xsi:noNamespaceSchemaLocation": SCHEMA_URL})
    summary = _add(root, "incidentSummary")
    _add(summary, "incidentType", data.incident_type)
    _add(summary, "platform", data.platform)
    if data.escalate_reason:
        _add(summary, "escalateToHighPriority", data.escalate_reason)
    _flags(summary, "reportAnnotations", data.annotations)
    _add(summary, "incidentDateTime", _iso(data.incident_at))
    chat = _add(_add(root, "internetDetails"), "chatImIncident")
    _add(chat, "chatClient", data.platform)
    if data.room_name:
        _add(chat, "chatRoomName", data.room_name)
    reporter = _add(root, "reporter")
    person = _add(reporter, "reportingPerson")
    _add(person, "firstName", data.reporter_first_name)
    _add(person, "lastName", data.reporter_last_name)
    _add(person, "email", data.reporter_email)
    if data.company_template:
        _add(reporter, "companyTemplate", data.company_template)
    if data.legal_url:
        _add(reporter, "legalURL", data.legal_url)
    if data.esp_identifier:
        reported = _add(root, "personOrUserReported")
        if data.emails or data.phones:
            who = _add(reported, "personOrUserReportedPerson")
            for phone in data.phones:
                _add(who, "phone", phone)
            for email in data.emails:
                _add(who, "email", email)
        _add(reported, "espIdentifier", data.esp_identifier[:255])
        _add(reported, "espService", data.platform)
        if data.screen_name:
            _add(reported, "screenName", data.screen_name)
        if data.display_name:
            _add(reported, "displayName", data.display_name)
        if data.profile_bio:
            _add(reported, "profileBio", data.profile_bio)
        for upload in data.uploads:
            _ip_event(reported, upload.ip, upload.at)
        if data.group_identifier:
            _add(reported, "groupIdentifier", data.group_identifier)
        if data.disabled_at and data.disabled_until:
            _add(reported, "accountTemporarilyDisabled", True, disabledDate=_iso(data.disabled_at),
                 reenabledDate=_iso(data.disabled_until))
        elif data.disabled_at:
            _add(reported, "accountPermanentlyDisabled", True, disabledDate=_iso(data.disabled_at))
    if data.additional_info:
        _add(root, "additionalInfo", data.additional_info)
    return _serialise(root)


def file_details_xml(data):
    root = ET.Element("fileDetails", {"xmlns:xsi": XSI, "xsi:noNamespaceSchemaLocation": SCHEMA_URL})
    _add(root, "reportId", data.report_id)
    _add(root, "fileId", data.file_id)
    _add(root, "fileName", data.file_name)
    if data.original_name:
        _add(root, "originalFileName", data.original_name)
    if data.uploaded_at:
        _add(root, "uploadedToEspTimestamp", _iso(data.uploaded_at))
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
        _ip_event(root, data.upload_ip, data.uploaded_at)
    if data.pdq:
        details = _add(root, "details", type="HASH")
        pair = _add(details, "nameValuePair")
        _add(pair, "name", "PDQ")
        _add(pair, "value", data.pdq)
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
    return problems


def hashes_of(data):
    return hashlib.md5(data).hexdigest(), hashlib.sha1(data).hexdigest(), hashlib.sha256(data).hexdigest()


def reporter_settings():
    return {
        "platform": settings.CYBERTIP_PLATFORM,
        "reporter_first_name": settings.CYBERTIP_REPORTER_FIRST_NAME,
        "reporter_last_name": settings.CYBERTIP_REPORTER_LAST_NAME,
        "reporter_email": settings.CYBERTIP_REPORTER_EMAIL,
        "company_template": settings.CYBERTIP_COMPANY_TEMPLATE,
        "legal_url": settings.CYBERTIP_LEGAL_URL,
    }
