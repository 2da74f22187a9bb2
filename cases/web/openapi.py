"""The OpenAPI 3.1 document of the platform API, served at /api/v1/openapi.json."""

from django.conf import settings

from cases.web.forms import (
    LISTING_KINDS,
    MAX_COUNT,
    MAX_DEVICE_HASHES,
    MAX_HASH_CHARS,
    MAX_LISTINGS,
    MAX_MEMBER_COUNT,
    MAX_MEMBERS,
    MAX_REFERRALS,
    MAX_SOURCE_CHARS,
)
from detection.detectors.hashing import DIHEDRAL
from detection.intake import MAX_BATCH_ITEMS, MAX_FORWARDS, MAX_FRAME_SECONDS, MAX_FRAMES, REPORT_REASONS

ERROR = {"$ref": "#/components/schemas/Error"}
# Bounds the API enforces (cases.web.api): query numbers, JSON nesting.
MAX_LIMIT, MAX_OFFSET, MAX_ID, MAX_JSON_DEPTH = 500, 10**9, 2**63 - 1, 32
# A batch of hash-only items: room for 1000 items with every orientation, or fewer videos with frames.
MAX_BATCH_BYTES = 16 * 1024 * 1024


def _opt(schema):
    """An optional body field: null is the same as leaving it out."""
    return {"anyOf": [schema, {"type": "null"}]}


def _text(max_length, min_length=0):
    return {"type": "string", "minLength": min_length, "maxLength": max_length}


def _json(schema):
    return {"content": {"application/json": {"schema": schema}}}


def _responses(ok_status, ok_schema, *errors):
    responses = {str(ok_status): {"description": "OK", **_json(ok_schema)}}
    texts = {400: "Invalid input: malformed JSON (NaN, nested deeper than 32 levels, not UTF-8), a wrong "
                  "type, a NUL character, a value out of range; `fields` names each bad field",
             401: "Missing or bad token", 404: "Not found", 413: "Too large",
             415: "Unsupported content type"}
    for code in (401, *errors):
        responses[str(code)] = {"description": texts[code], **_json(ERROR)}
    return responses


def _statement_schema():
    """The statement of reasons a ban or removal carries, for the platform to show the user."""
    string, date_time = {"type": "string"}, {"type": "string", "format": "date-time"}
    option = {"type": "object", "properties": {
        "type": {"enum": ["internal_complaint", "out_of_court_dispute_settlement", "judicial_redress"]},
        "description": string, "url": string}}
    return {"type": "object", "description": "DSA Art. 17 statement of reasons. `facts` is safe to show the user: "
                                             "it never says how child-exploitation material was found.",
            "properties": {
                "id": {"type": "string", "description": "Stable identifier (also the Transparency Database puid)"},
                "restriction": {"enum": ["account_suspended", "account_terminated", "group_suspended",
                                         "group_terminated", "content_removed"]},
                "target": string, "content_type": {"enum": ["image", "video", "text", "account", "group", "other"]},
                "permanent": {"type": "boolean"}, "until": {"anyOf": [date_time, {"type": "null"}]},
                "facts": string, "automated_detection": {"type": "boolean"},
                "automated_decision": {"type": "boolean"},
                "source": {"enum": ["notice", "own_initiative"]},
                "ground": {"enum": ["illegal_content", "incompatible_content"]},
                "legal_ground": string, "terms_ground": string,
                "redress": {"type": "object", "properties": {
                    "instructions": string, "url": string, "options": {"type": "array", "items": option}}},
                "decided_at": date_time}}


def _hex(digits):
    return {"type": "string", "minLength": digits, "maxLength": digits, "pattern": f"^[0-9a-fA-F]{{{digits}}}$"}


def _hash_item(item_fields):
    """The JSON body of an image or video the platform hashed at its edge (no bytes)."""
    quality = {"type": "integer", "minimum": 0, "maximum": 100}
    frame = {"type": "object", "required": ["t", "pdq", "quality"], "additionalProperties": False, "properties": {
        "t": {"type": "number", "minimum": 0, "maximum": MAX_FRAME_SECONDS,
              "description": "Seconds from the start; later than the frame before"},
        "pdq": _hex(64), "quality": quality}}
    hashes = {
        "type": "object", "additionalProperties": False,
        "description": ("At least one of pdq, md5, sha256 or frames. `pdq` needs `pdq_quality` (what the PDQ "
                        "hasher reported; below the console's floor it is not compared). `pdq_orientations`: "
                        f"the {len(DIHEDRAL)} dihedral PDQ hashes in this order: {', '.join(DIHEDRAL)} (the "
                        f"first equal to `pdq`). `frames` (videos only): vPDQ frame hashes in time order, at "
                        f"most {MAX_FRAMES}."),
        "anyOf": [{"required": [name]} for name in ("pdq", "md5", "sha256", "frames")],
        "properties": {
            "pdq": _hex(64), "pdq_quality": quality, "md5": _hex(32), "sha256": _hex(64),
            "pdq_orientations": {"type": "array", "items": _hex(64), "minItems": len(DIHEDRAL),
                                 "maxItems": len(DIHEDRAL)},
            "frames": {"type": "array", "items": frame, "minItems": 1, "maxItems": MAX_FRAMES},
        }}
    return {"type": "object", "required": ["account", "hashes"],
            "description": "Hashes only, for a platform that hashes at its edge: no media is held.",
            "properties": {**item_fields, "kind": _opt({"enum": ["image", "video"]}), "hashes": hashes}}


UPSERTED = {"$ref": "#/components/schemas/Upserted"}
EXTERNAL_ID = {"name": "external_id", "in": "path", "required": True,
               "schema": {"type": "string", "minLength": 1, "maxLength": 255}}


def _spread_fields():
    """How far an item travelled, as the platform counted it; left out when it does not know."""
    forwards = {"type": "integer", "minimum": 0, "maximum": MAX_FORWARDS}
    return {
        "forward_count": {**forwards, "description": "Times the item was forwarded"},
        "forward_chats": {**forwards, "description": "Distinct chats the item reached"},
        "forwarded_many": {"type": "boolean", "description": "The item carries the platform's \"forwarded many "
                                                             "times\" mark"},
    }


def document():
    string = {"type": "string"}
    spread = _spread_fields()
    json_item_fields = {"account": _text(255, 1), "group": _opt(_text(255)), "external_id": _opt(_text(255)),
                        "uploaded_at": _opt({"type": "string", "format": "date-time"}), "ip": _opt(string),
                        **{name: _opt(schema) for name, schema in spread.items()}}
    subject_fields = {
        "facts": {"type": "object", "description": "Behaviour facts, free-form (≤ 16 KiB of JSON)"},
    }
    count = {"type": "integer", "minimum": 0}
    fact_count = {"type": "integer", "minimum": 0, "maximum": MAX_COUNT}
    source = {"type": "string", "minLength": 1, "maxLength": MAX_SOURCE_CHARS, "pattern": r"\S"}
    # The facts the risk scores read; a missing or malformed one (a string, a negative) is ignored.
    account_facts = {"type": "object", "description": (
        "Behaviour facts (≤ 16 KiB of JSON), metadata only, never message content. Read by the risk "
        "scores: `phone_hash` and `device_hashes` link accounts on the same phone or device; the "
        "teen-contact signal (for adult accounts) reads `teen_non_contacts_initiated_7d` (teens outside "
        "its contacts it started a conversation with in the last 7 days), `non_contacts_initiated_7d` "
        "(everyone outside its contacts it started one with), `blocked_by_teens_30d` and "
        "`reported_by_teens_30d` (distinct teen accounts, last 30 days); the account risk score reads "
        "`first_contact_blocks_30d` and `first_contact_reports_30d` (distinct people of any age who blocked or "
        "reported it when it first messaged them, last 30 days) and `group_adds_refused_30d` (people who "
        "refused its adding them to a group). Other keys are kept and shown."),
        "properties": {
            "phone_hash": {"type": "string", "maxLength": MAX_HASH_CHARS},
            "device_hashes": {"type": "array", "items": {"type": "string", "maxLength": MAX_HASH_CHARS},
                              "maxItems": MAX_DEVICE_HASHES},
            "teen_non_contacts_initiated_7d": fact_count, "non_contacts_initiated_7d": fact_count,
            "blocked_by_teens_30d": fact_count, "reported_by_teens_30d": fact_count,
            "first_contact_blocks_30d": fact_count, "first_contact_reports_30d": fact_count,
            "group_adds_refused_30d": fact_count,
        }}
    group_facts = {"type": "object", "description": (
        "Behaviour facts (≤ 16 KiB of JSON). Read by the group risk score: `invite_link_resets_7d`, "
        "`member_joins_7d` (members who joined in the last 7 days), `media_post_share` (0..1, the share of "
        "posts that are photos or videos), `teen_members` and `adult_members` (counts by age band, when "
        "the platform knows more members than it sends), `invite_listings` (where the group's invite link "
        "was seen listed in public: a site's domain or an app's name, when), `invite_join_share` (0..1, the "
        "share of members who joined through an invite link) and `referral_joins` (members who joined "
        "through a referring app, by app). Other keys are kept and shown."),
        "properties": {
            "invite_link_resets_7d": fact_count, "member_joins_7d": fact_count,
            "media_post_share": {"type": "number", "minimum": 0, "maximum": 1},
            "teen_members": fact_count, "adult_members": fact_count,
            "invite_listings": {"type": "array", "maxItems": MAX_LISTINGS, "items": {
                "type": "object", "required": ["source", "kind", "seen_at"], "additionalProperties": False,
                "properties": {"source": source, "kind": {"enum": list(LISTING_KINDS)},
                               "seen_at": {"type": "string", "format": "date-time"}}}},
            "invite_join_share": {"type": "number", "minimum": 0, "maximum": 1},
            "referral_joins": {"type": "array", "maxItems": MAX_REFERRALS, "items": {
                "type": "object", "required": ["app", "joins"], "additionalProperties": False,
                "properties": {"app": source, "joins": fact_count}}},
        }}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Review console platform API", "version": "1"},
        "servers": [{"url": "/api/v1"}],
        "security": [{"bearer": []}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {"type": "object", "required": ["error"], "properties": {
                    "error": string,
                    "fields": {"type": "object", "additionalProperties": {"type": "array", "items": string}}}},
                "Accepted": {"type": "object", "properties": {"id": {"type": "integer"}, "status": string}},
                "Signal": {"type": "object", "properties": {
                    "id": {"type": "integer"}, "kind": string, "detector": string, "label": string,
                    "score": {"type": "number"}, "severity": {"type": "integer"}, "explanation": string,
                    "details": {"type": "object"}, "case": {"type": ["integer", "null"]}}},
                "Item": {"type": "object", "properties": {
                    "id": {"type": "integer"}, "kind": {"enum": ["image", "video", "text"]},
                    "hash_only": {"type": "boolean", "description": "The platform sent hashes only: no media is held"},
                    "status": {"enum": ["queued", "scanned", "rejected"]},
                    "reject_reason": {"type": ["string", "null"]}, "account": string,
                    "group": {"type": ["string", "null"]}, "hashes": {"type": "object"},
                    "spread": {"type": "object", "properties": {
                        name: {"anyOf": [schema, {"type": "null"}]} for name, schema in spread.items()}},
                    "signals": {"type": "array", "items": {"$ref": "#/components/schemas/Signal"}},
                    "case": {"type": ["integer", "null"]}}},
                "Account": {"type": "object", "description": "Fields left out (or null) are left as they are.",
                            "properties": {
                    "screen_name": _opt(_text(255)), "display_name": _opt(_text(255)), "bio": _opt(_text(5000)),
                    "email": _opt(_text(320)), "phone": _opt(_text(64)), "age_band": _opt(_text(16)),
                    "registered_at": _opt({"type": "string", "format": "date-time"}),
                    **subject_fields, "facts": _opt(account_facts)}},
                "Group": {"type": "object", "description": "Fields left out (or null) are left as they are.",
                          "properties": {
                    "name": _opt(_text(255)), "description": _opt(_text(5000)),
                    "member_count": _opt({"type": "integer", "minimum": 0, "maximum": MAX_MEMBER_COUNT}),
                    "members": _opt({"type": "array", "items": _text(255, 1), "maxItems": MAX_MEMBERS}),
                    **subject_fields, "facts": _opt(group_facts)}},
                "Report": {"type": "object", "required": ["reporter", "reason"], "properties": {
                    "reporter": _text(255, 1), "account": _opt(_text(255)), "group": _opt(_text(255)),
                    "item": _opt({"type": "integer", "minimum": 1, "maximum": MAX_ID}),
                    "reason": {"enum": list(REPORT_REASONS)}, "comment": _opt(_text(5000)),
                    "external_id": _opt(_text(255))},
                    "description": "Exactly one of account, group or item."},
                "Appeal": {"type": "object", "required": ["statement"], "properties": {
                    "enforcement": _opt({"type": "integer", "minimum": 1, "maximum": MAX_ID,
                                         "description": "The id of the ban or removal, as the webhook or "
                                                        "GET /enforcements gave it"}),
                    "statement_of_reasons": _opt({**_text(64), "description": "Or its statement of reasons' id "
                                                                              "(sor-...)"}),
                    "account": _opt({**_text(255), "description": "The account appealing; default: the "
                                                                  "enforcement's target"}),
                    "statement": {**_text(settings.APPEAL_MAX_CHARS, 1), "description": "What the user says"},
                    "attachment": _opt({**_text(settings.APPEAL_ATTACHMENT_MAX_CHARS),
                                        "description": "Anything the user added, as text"})},
                    "description": "Exactly one of enforcement or statement_of_reasons. One appeal per decision "
                                   "and account: a retry with the same statement returns it (200)."},
                "AppealReceived": {"type": "object", "properties": {
                    "id": {"type": "integer"}, "status": {"enum": ["received", "upheld", "overturned"]}}},
                "Upserted": {"type": "object", "properties": {
                    "external_id": string, "created": {"type": "boolean"}, "status": string}},
                "BatchAccepted": {"type": "object", "required": ["items", "accepted", "duplicates", "refused"],
                                  "properties": {
                    "items": {"type": "array", "description": "One answer per item, in the order sent", "items": {
                        "anyOf": [
                            {"type": "object", "required": ["id", "status"], "properties": {
                                "id": {"type": "integer"}, "status": string,
                                "duplicate": {"type": "boolean", "description": (
                                    "Already received (same account and external_id, earlier or in this "
                                    "batch): the id is the first item's")}}},
                            {"type": "object", "required": ["error", "fields"], "description": "Refused",
                             "properties": {"error": string, "fields": {
                                 "type": "object", "additionalProperties": {"type": "array", "items": string}}}},
                        ]}},
                    "accepted": count, "duplicates": count, "refused": count}},
                "StatementOfReasons": _statement_schema(),
                "Enforcement": {"type": "object", "properties": {
                    "id": {"type": "integer"}, "action": string, "target": string, "status": string,
                    "platform": {"type": ["string", "null"]}, "decision": {"type": "integer"},
                    "case": {"type": "integer"}, "reason": string,
                    "expires_at": {"type": ["string", "null"], "format": "date-time"},
                    "attempts": {"type": "integer"},
                    "confirmed_at": {"type": ["string", "null"], "format": "date-time"},
                    "created_at": {"type": "string", "format": "date-time"},
                    "statement_of_reasons": {"anyOf": [{"$ref": "#/components/schemas/StatementOfReasons"},
                                                       {"type": "null"}],
                                             "description": "With every ban and removal (DSA Art. 17); null "
                                                            "for what restricts nothing"},
                    "appeal": {"type": "object", "description": (
                        "Only on action `appeal_outcome` (target: the account that appealed): the outcome to tell "
                        "the user, in words safe to show them"), "properties": {
                        "id": {"type": "integer"}, "outcome": {"enum": ["upheld", "overturned"]}, "message": string,
                        "decided_at": {"type": "string", "format": "date-time"},
                        "statement_of_reasons": {"type": ["string", "null"]}, "enforcement": {"type": "integer"}}}}},
                "EnforcementList": {"type": "object", "properties": {
                    "results": {"type": "array", "items": {"$ref": "#/components/schemas/Enforcement"}}}},
                "CaseList": {"type": "object", "properties": {
                    "count": {"type": "integer"}, "results": {"type": "array", "items": {"type": "object"}}}},
            },
        },
        "paths": {
            "/items": {"post": {
                "summary": "Submit an image, video or text item for scanning, or an image's or video's hashes alone",
                "requestBody": {"required": True, "content": {
                    "multipart/form-data": {"schema": {"type": "object", "required": ["file", "account"],
                        "properties": {"file": {"type": "string", "format": "binary"}, "account": _text(255, 1),
                                       "group": _text(255), "kind": {"enum": ["image", "video"]},
                                       "external_id": _text(255),
                                       "uploaded_at": {"type": "string", "format": "date-time"},
                                       "ip": string, **spread}}},
                    "application/json": {"schema": {"anyOf": [
                        {"type": "object", "required": ["text", "account"], "description": "A text item",
                         "properties": {"text": _text(settings.MAX_TEXT_CHARS, 1), **json_item_fields,
                                        "kind": _opt({"enum": ["text"]})}},
                        _hash_item(json_item_fields),
                    ]}},
                }},
                "responses": {**_responses(202, {"$ref": "#/components/schemas/Accepted"}, 400, 413, 415),
                              "200": {"description": "Already received (same account and external_id)",
                                      **_json({"type": "object"})}},
            }},
            "/items/batch": {"post": {
                "summary": f"Submit up to {MAX_BATCH_ITEMS} hash-only items at once",
                "description": (
                    "Each item is checked as POST /api/v1/items checks a hash-only item. A refused item is "
                    "answered with its errors at its position and the others are taken; a retried item (same "
                    "account and external_id) is answered with the item first received. The whole batch is "
                    f"refused only when it is not a JSON object with a list of 1 to {MAX_BATCH_ITEMS} items "
                    f"(400, or 413 past {MAX_BATCH_ITEMS} items or {MAX_BATCH_BYTES} bytes)."),
                "requestBody": {"required": True, **_json({
                    "type": "object", "required": ["items"], "additionalProperties": False, "properties": {
                        "items": {"type": "array", "minItems": 1, "maxItems": MAX_BATCH_ITEMS,
                                  "items": _hash_item(json_item_fields)}}})},
                "responses": _responses(202, {"$ref": "#/components/schemas/BatchAccepted"}, 400, 413, 415),
            }},
            "/items/{id}": {"get": {
                "summary": "An item's status, hashes, signals and case",
                "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}],
                "responses": _responses(200, {"$ref": "#/components/schemas/Item"}, 400, 404),
            }},
            "/accounts/{external_id}": {"put": {
                "summary": "Create or update an account with its text surfaces and behaviour facts",
                "parameters": [EXTERNAL_ID],
                "requestBody": _json({"$ref": "#/components/schemas/Account"}),
                "responses": {**_responses(200, UPSERTED, 400, 404, 413, 415),
                              "201": {"description": "Created", **_json(UPSERTED)}},
            }},
            "/groups/{external_id}": {"put": {
                "summary": "Create or update a group with its text surfaces, members and behaviour facts",
                "parameters": [EXTERNAL_ID],
                "requestBody": _json({"$ref": "#/components/schemas/Group"}),
                "responses": {**_responses(200, UPSERTED, 400, 404, 413, 415),
                              "201": {"description": "Created", **_json(UPSERTED)}},
            }},
            "/reports": {"post": {
                "summary": "Submit a user report against an account, group or item",
                "requestBody": {"required": True, **_json({"$ref": "#/components/schemas/Report"})},
                "responses": _responses(202, {"$ref": "#/components/schemas/Accepted"}, 400, 413, 415),
            }},
            "/appeals": {"post": {
                "summary": "Submit a user's appeal of a ban or removal (DSA Art. 20 internal complaint)",
                "description": (
                    "The appeal is reviewed by someone who took no part in the decision; its outcome comes back "
                    "as an enforcement with action `appeal_outcome` (webhook or pull). 404: no such enforcement "
                    "or statement. 409: the decision was already reversed, is past the appeal window, or this "
                    "account already appealed it. 429: too many appeals from this account in 30 days."),
                "requestBody": {"required": True, **_json({"$ref": "#/components/schemas/Appeal"})},
                "responses": {**_responses(201, {"$ref": "#/components/schemas/AppealReceived"}, 400, 404, 413, 415),
                              "200": {"description": "Already received (a retry of the same appeal)",
                                      **_json({"$ref": "#/components/schemas/AppealReceived"})},
                              "409": {"description": "Refused: the reason says why", **_json(ERROR)},
                              "429": {"description": "Too many appeals from this account", **_json(ERROR)}},
            }},
            "/enforcements": {"get": {
                "summary": "Enforcement the platform must carry out (the pull side of the signed webhooks)",
                "parameters": [
                    {"name": "status", "in": "query", "schema": {"enum": ["unconfirmed", "confirmed", "all"]}},
                    {"name": "after", "in": "query", "schema": {"type": "integer", "minimum": 0, "maximum": MAX_ID},
                     "description": "id cursor"},
                ],
                "responses": _responses(200, {"$ref": "#/components/schemas/EnforcementList"}, 400),
            }},
            "/enforcements/{id}/confirm": {"post": {
                "summary": "Confirm that an enforcement was applied (or could not be)",
                "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}],
                "requestBody": {"required": True, **_json({"type": "object", "required": ["result"], "properties": {
                    "result": {"enum": ["applied", "failed"]}, "detail": _opt(_text(2000))}})},
                "responses": _responses(200, {"$ref": "#/components/schemas/Enforcement"}, 400, 404, 413, 415),
            }},
            "/cases": {"get": {
                "summary": "Cases with subject, queue, priority and a summary of their signals",
                "parameters": [
                    {"name": "status", "in": "query", "schema": {"enum": ["open", "closed", "all"]}},
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}},
                    {"name": "offset", "in": "query",
                     "schema": {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET}},
                ],
                "responses": _responses(200, {"$ref": "#/components/schemas/CaseList"}, 400),
            }},
        },
    }
