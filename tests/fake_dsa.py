"""A fake of the DSA Transparency Database's submission API on loopback, answering as the real one does.

`POST /api/v1/statement` (one) and `POST /api/v1/statements` (`{"statements": [...]}`, 1 to 100), with
`Authorization: Bearer <token>` (401 otherwise). Every statement is checked against the schema's
required fields and allowed values (API v2): a bad one is `422 {"message", "errors": {field: [..]}}`
alone, or `422 {"errors": {"statement_<n>": {field: [..]}}}` in a batch, and then nothing of the batch
is created. A puid the platform used before is `422` with `errors.puid` and `existing` (one) or
`errors.existing_puids` (a batch). Created statements get a uuid and an id (`201`).

Fault injection: `fail_next(times, status=503)` answers the next calls with that status, or drops the
connection (`status="drop"`).
"""

import json
import re
import uuid
from datetime import date

from tests.loopback import LoopbackServer

TOKEN = "X|fake-dsa-token"
EU = {"AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GR", "HR", "HU", "IE", "IT", "LT", "LU",
      "LV", "MT", "NL", "PL", "PT", "RO", "SE", "SI", "SK"}
EEA = EU | {"IS", "LI", "NO"}
DECISION_VISIBILITIES = {"DECISION_VISIBILITY_CONTENT_REMOVED", "DECISION_VISIBILITY_CONTENT_DISABLED",
                         "DECISION_VISIBILITY_CONTENT_DEMOTED", "DECISION_VISIBILITY_CONTENT_AGE_RESTRICTED",
                         "DECISION_VISIBILITY_CONTENT_INTERACTION_RESTRICTED", "DECISION_VISIBILITY_CONTENT_LABELLED",
                         "DECISION_VISIBILITY_OTHER"}
DECISION_MONETARIES = {"DECISION_MONETARY_SUSPENSION", "DECISION_MONETARY_TERMINATION", "DECISION_MONETARY_OTHER"}
DECISION_PROVISIONS = {"DECISION_PROVISION_PARTIAL_SUSPENSION", "DECISION_PROVISION_TOTAL_SUSPENSION",
                       "DECISION_PROVISION_PARTIAL_TERMINATION", "DECISION_PROVISION_TOTAL_TERMINATION"}
DECISION_ACCOUNTS = {"DECISION_ACCOUNT_SUSPENDED", "DECISION_ACCOUNT_TERMINATED"}
DECISION_GROUNDS = {"DECISION_GROUND_ILLEGAL_CONTENT", "DECISION_GROUND_INCOMPATIBLE_CONTENT"}
CONTENT_TYPES = {"CONTENT_TYPE_APP", "CONTENT_TYPE_AUDIO", "CONTENT_TYPE_IMAGE", "CONTENT_TYPE_PRODUCT",
                 "CONTENT_TYPE_SYNTHETIC_MEDIA", "CONTENT_TYPE_TEXT", "CONTENT_TYPE_VIDEO", "CONTENT_TYPE_OTHER"}
CATEGORIES = {
    "STATEMENT_CATEGORY_ANIMAL_WELFARE", "STATEMENT_CATEGORY_CONSUMER_INFORMATION",
    "STATEMENT_CATEGORY_CYBER_VIOLENCE", "STATEMENT_CATEGORY_CYBER_VIOLENCE_AGAINST_WOMEN",
    "STATEMENT_CATEGORY_DATA_PROTECTION_AND_PRIVACY_VIOLATIONS", "STATEMENT_CATEGORY_ILLEGAL_OR_HARMFUL_SPEECH",
    "STATEMENT_CATEGORY_INTELLECTUAL_PROPERTY_INFRINGEMENTS",
    "STATEMENT_CATEGORY_NEGATIVE_EFFECTS_ON_CIVIC_DISCOURSE_OR_ELECTIONS", "STATEMENT_CATEGORY_NOT_SPECIFIED_NOTICE",
    "STATEMENT_CATEGORY_OTHER_VIOLATION_TC", "STATEMENT_CATEGORY_PROTECTION_OF_MINORS",
    "STATEMENT_CATEGORY_RISK_FOR_PUBLIC_SECURITY", "STATEMENT_CATEGORY_SCAMS_AND_FRAUD", "STATEMENT_CATEGORY_SELF_HARM",
    "STATEMENT_CATEGORY_UNSAFE_AND_PROHIBITED_PRODUCTS", "STATEMENT_CATEGORY_VIOLENCE",
}
# The keywords the console uses and a few neighbours (the real list is longer).
KEYWORDS = {"KEYWORD_CHILD_SEXUAL_ABUSE_MATERIAL", "KEYWORD_CHILD_SEXUAL_ABUSE_MATERIAL_DEEPFAKE",
            "KEYWORD_GROOMING_SEXUAL_ENTICEMENT_MINORS", "KEYWORD_AGE_SPECIFIC_RESTRICTIONS_MINORS",
            "KEYWORD_UNSAFE_CHALLENGES", "KEYWORD_NUDITY", "KEYWORD_ADULT_SEXUAL_MATERIAL", "KEYWORD_OTHER"}
SOURCE_TYPES = {"SOURCE_ARTICLE_16", "SOURCE_TRUSTED_FLAGGER", "SOURCE_TYPE_OTHER_NOTIFICATION", "SOURCE_VOLUNTARY"}
AUTOMATED_DECISIONS = {"AUTOMATED_DECISION_FULLY", "AUTOMATED_DECISION_PARTIALLY",
                       "AUTOMATED_DECISION_NOT_AUTOMATED"}
PUID = re.compile(r"^[A-Za-z0-9_-]{1,500}$")
DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
KNOWN = {"decision_visibility", "decision_visibility_other", "decision_monetary", "decision_monetary_other",
         "decision_provision", "decision_account", "account_type", "decision_ground", "decision_ground_reference_url",
         "illegal_content_legal_ground", "illegal_content_explanation", "incompatible_content_ground",
         "incompatible_content_explanation", "incompatible_content_illegal", "content_type", "content_type_other",
         "category", "category_addition", "category_specification", "category_specification_other",
         "territorial_scope", "content_language", "content_date", "application_date", "end_date_account_restriction",
         "end_date_monetary_restriction", "end_date_service_restriction", "end_date_visibility_restriction",
         "decision_facts", "source_type", "source_identity", "automated_detection", "automated_decision", "puid",
         "content_id"}


def _day(value):
    if not isinstance(value, str) or not DAY.match(value):
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        return None


def validate(s):  # noqa: PLR0912 - one rule a line, as the schema lists them
    """{field: [messages]} for one statement, empty when the database would take it."""
    errors = {}

    def bad(field, message):
        errors.setdefault(field, []).append(message)

    if not isinstance(s, dict):
        return {"statement": ["The statement must be an object."]}
    if not any(s.get(f) for f in ("decision_visibility", "decision_monetary", "decision_provision",
                                  "decision_account")):
        for field in ("decision_visibility", "decision_monetary", "decision_provision", "decision_account"):
            bad(field, f"The {field.replace('_', ' ')} field is required when none of the other decisions are "
                       "present.")
    visibility = s.get("decision_visibility")
    if visibility is not None and (not isinstance(visibility, list) or not set(visibility) <= DECISION_VISIBILITIES):
        bad("decision_visibility", "The selected decision visibility is invalid.")
    for field, allowed in (("decision_monetary", DECISION_MONETARIES), ("decision_provision", DECISION_PROVISIONS),
                           ("decision_account", DECISION_ACCOUNTS)):
        if s.get(field) is not None and s[field] not in allowed:
            bad(field, f"The selected {field.replace('_', ' ')} is invalid.")
    if s.get("decision_ground") not in DECISION_GROUNDS:
        bad("decision_ground", "The decision ground field is required." if not s.get("decision_ground")
            else "The selected decision ground is invalid.")
    if s.get("decision_ground") == "DECISION_GROUND_ILLEGAL_CONTENT":
        for field, limit in (("illegal_content_legal_ground", 500), ("illegal_content_explanation", 2000)):
            if not s.get(field):
                bad(field, f"The {field.replace('_', ' ')} field is required when decision ground is illegal "
                           "content.")
            elif len(s[field]) > limit:
                bad(field, f"The {field.replace('_', ' ')} field must not be greater than {limit} characters.")
    if s.get("decision_ground") == "DECISION_GROUND_INCOMPATIBLE_CONTENT":
        for field, limit in (("incompatible_content_ground", 500), ("incompatible_content_explanation", 2000)):
            if not s.get(field):
                bad(field, f"The {field.replace('_', ' ')} field is required when decision ground is incompatible "
                           "content.")
            elif len(s[field]) > limit:
                bad(field, f"The {field.replace('_', ' ')} field must not be greater than {limit} characters.")
        if s.get("incompatible_content_illegal") not in (None, "Yes", "No"):
            bad("incompatible_content_illegal", "The selected incompatible content illegal is invalid.")
    content_type = s.get("content_type")
    if not content_type:
        bad("content_type", "The content type field is required.")
    elif not isinstance(content_type, list) or not set(content_type) <= CONTENT_TYPES:
        bad("content_type", "The selected content type is invalid.")
    elif "CONTENT_TYPE_OTHER" in content_type and not s.get("content_type_other"):
        bad("content_type_other", "The content type other field is required when content is other.")
    if s.get("category") not in CATEGORIES:
        bad("category", "The category field is required." if not s.get("category")
            else "The selected category is invalid.")
    keywords = s.get("category_specification")
    if keywords is not None and (not isinstance(keywords, list) or not set(keywords) <= KEYWORDS):
        bad("category_specification", "The selected category specification is invalid.")
    scope = s.get("territorial_scope")
    if not scope:
        bad("territorial_scope", "The territorial scope field is required.")
    elif not isinstance(scope, list) or not set(scope) <= EEA:
        bad("territorial_scope", "The selected territorial scope is invalid.")
    content_date, applied = _day(s.get("content_date")), _day(s.get("application_date"))
    if content_date is None or not date(2000, 1, 1) <= content_date <= date(2038, 1, 1):
        bad("content_date", "The content date does not match the format YYYY-MM-DD.")
    if applied is None or not date(2020, 1, 1) <= applied <= date(2038, 1, 1):
        bad("application_date", "The application date does not match the format YYYY-MM-DD.")
    for field in ("end_date_account_restriction", "end_date_monetary_restriction", "end_date_service_restriction",
                  "end_date_visibility_restriction"):
        if s.get(field) is not None:
            end = _day(s[field])
            if end is None:
                bad(field, f"The {field.replace('_', ' ')} does not match the format YYYY-MM-DD.")
            elif applied and end < applied:
                bad(field, f"The {field.replace('_', ' ')} must be a date after or equal to application date.")
    facts = s.get("decision_facts")
    if not facts:
        bad("decision_facts", "The decision facts field is required.")
    elif len(facts) > 5000:
        bad("decision_facts", "The decision facts field must not be greater than 5000 characters.")
    if s.get("source_type") not in SOURCE_TYPES:
        bad("source_type", "The source type field is required." if not s.get("source_type")
            else "The selected source type is invalid.")
    if s.get("automated_detection") not in ("Yes", "No"):
        bad("automated_detection", "The automated detection field is required." if not s.get("automated_detection")
            else "The selected automated detection is invalid.")
    if s.get("automated_decision") not in AUTOMATED_DECISIONS:
        bad("automated_decision", "The automated decision field is required." if not s.get("automated_decision")
            else "The selected automated decision is invalid.")
    if not s.get("puid"):
        bad("puid", "The puid field is required.")
    elif not isinstance(s["puid"], str) or not PUID.match(s["puid"]):
        bad("puid", "The puid format is invalid.")
    for field in set(s) - KNOWN:
        bad(field, "The field is not part of the schema.")
    return errors


class FakeTransparencyDatabase(LoopbackServer):
    path = "/api/v1"

    def __init__(self):
        self.statements = {}  # puid -> the statement as created
        self.calls = []  # (endpoint, number of statements, HTTP status answered)
        self.faults = []
        super().__init__()

    def fail_next(self, times=1, status=503):
        self.faults += [status] * times

    def handle(self, request):
        endpoint = request.path.removeprefix(self.path).strip("/")
        length = int(request.headers.get("Content-Length") or 0)
        raw = request.rfile.read(length) if length else b""
        if self.faults:
            fault = self.faults.pop(0)
            self.calls.append((endpoint, None, fault))
            if fault == "drop":
                return self.drop(request)
            return self.answer(request, fault, {"message": "Server Error"})
        status, body = self.route(request, endpoint, raw)
        count = len(body.get("statements", [])) if isinstance(body, dict) and endpoint == "statements" else 1
        self.calls.append((endpoint, count, status))
        return self.answer(request, status, body)

    def route(self, request, endpoint, raw):
        if request.command != "POST" or endpoint not in ("statement", "statements"):
            return 404, {"message": "Not Found"}
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return 401, {"message": "Unauthenticated."}
        try:
            payload = json.loads(raw)
        except ValueError:
            payload = {}
        if endpoint == "statement":
            return self.create_one(payload)
        return self.create_many(payload)

    def create_one(self, statement):
        errors = validate(statement)
        if errors:
            first = next(iter(errors.values()))[0]
            more = sum(len(v) for v in errors.values()) - 1
            return 422, {"message": first + (f" (and {more} more errors)" if more else ""), "errors": errors}
        if statement["puid"] in self.statements:
            message = "The identifier given is not unique within this platform."
            return 422, {"message": message, "errors": {"puid": [message]},
                         "existing": self.statements[statement["puid"]]}
        return 201, self.store(statement)

    def create_many(self, payload):
        statements = payload.get("statements") if isinstance(payload, dict) else None
        if not isinstance(statements, list) or not 1 <= len(statements) <= 100:
            message = "The statements field must have between 1 and 100 items."
            return 422, {"message": message, "errors": {"statements": [message]}}
        errors = {f"statement_{i}": e for i, e in enumerate(validate(s) for s in statements) if e}
        if errors:
            return 422, {"errors": errors}
        puids = [s["puid"] for s in statements]
        if len(set(puids)) != len(puids):
            message = "The platform identifier(s) are not all unique within this call."
            return 422, {"message": message, "errors": {"puid": [message]}}
        existing = [p for p in puids if p in self.statements]
        if existing:
            return 422, {"message": "the platform identifier(s) given are not all unique within this platform.",
                         "errors": {"puid": ["the platform identifier(s) are not all unique within this platform."],
                                    "existing_puids": existing}}
        return 201, {"statements": [self.store(s) for s in statements]}

    def store(self, statement):
        created = {**statement, "uuid": str(uuid.uuid4()), "id": len(self.statements) + 1,
                   "created_at": "2026-01-01 00:00:00", "platform_name": "Example Chat"}
        self.statements[statement["puid"]] = created
        return created

    @staticmethod
    def answer(request, status, body):
        data = json.dumps(body).encode()
        request.send_response(status)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        request.wfile.write(data)
