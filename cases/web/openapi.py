"""The OpenAPI 3.1 document of the platform API, served at /api/v1/openapi.json."""

from detection.intake import REPORT_REASONS

ERROR = {"$ref": "#/components/schemas/Error"}


def _json(schema):
    return {"content": {"application/json": {"schema": schema}}}


def _responses(ok_status, ok_schema, *errors):
    responses = {str(ok_status): {"description": "OK", **_json(ok_schema)}}
    texts = {400: "Invalid input", 401: "Missing or bad token", 404: "Not found", 413: "Too large",
             415: "Unsupported content type"}
    for code in (401, *errors):
        responses[str(code)] = {"description": texts[code], **_json(ERROR)}
    return responses


def document():
    string = {"type": "string"}
    subject_fields = {
        "facts": {"type": "object", "description": "Behaviour facts, free-form (≤ 16 KiB of JSON)"},
    }
    count = {"type": "integer", "minimum": 0}
    # The facts the risk scores read; a missing or malformed one (a string, a negative) is ignored.
    account_facts = {"type": "object", "description": (
        "Behaviour facts (≤ 16 KiB of JSON), metadata only, never message content. Read by the risk "
        "scores: `phone_hash` and `device_hashes` link accounts on the same phone or device; the "
        "teen-contact signal (for adult accounts) reads `teen_non_contacts_initiated_7d` (teens outside "
        "its contacts it started a conversation with in the last 7 days), `non_contacts_initiated_7d` "
        "(everyone outside its contacts it started one with), `blocked_by_teens_30d` and "
        "`reported_by_teens_30d` (distinct teen accounts, last 30 days). Other keys are kept and shown."),
        "properties": {
            "phone_hash": {"type": "string", "maxLength": 128},
            "device_hashes": {"type": "array", "items": {"type": "string", "maxLength": 128}, "maxItems": 20},
            "teen_non_contacts_initiated_7d": count, "non_contacts_initiated_7d": count,
            "blocked_by_teens_30d": count, "reported_by_teens_30d": count,
        }}
    group_facts = {"type": "object", "description": (
        "Behaviour facts (≤ 16 KiB of JSON). Read by the group risk score: `invite_link_resets_7d`, "
        "`member_joins_7d` (members who joined in the last 7 days), `media_post_share` (0..1, the share of "
        "posts that are photos or videos), `teen_members` and `adult_members` (counts by age band, when "
        "the platform knows more members than it sends). Other keys are kept and shown."),
        "properties": {
            "invite_link_resets_7d": count, "member_joins_7d": count,
            "media_post_share": {"type": "number", "minimum": 0, "maximum": 1},
            "teen_members": count, "adult_members": count,
        }}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Review console platform API", "version": "1"},
        "servers": [{"url": "/api/v1"}],
        "security": [{"bearer": []}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {"type": "object", "required": ["error"],
                          "properties": {"error": string, "fields": {"type": "object"}}},
                "Accepted": {"type": "object", "properties": {"id": {"type": "integer"}, "status": string}},
                "Signal": {"type": "object", "properties": {
                    "id": {"type": "integer"}, "kind": string, "detector": string, "label": string,
                    "score": {"type": "number"}, "severity": {"type": "integer"}, "explanation": string,
                    "details": {"type": "object"}, "case": {"type": ["integer", "null"]}}},
                "Item": {"type": "object", "properties": {
                    "id": {"type": "integer"}, "kind": {"enum": ["image", "video", "text"]},
                    "status": {"enum": ["queued", "scanned", "rejected"]},
                    "reject_reason": {"type": ["string", "null"]}, "account": string,
                    "group": {"type": ["string", "null"]}, "hashes": {"type": "object"},
                    "signals": {"type": "array", "items": {"$ref": "#/components/schemas/Signal"}},
                    "case": {"type": ["integer", "null"]}}},
                "Account": {"type": "object", "properties": {
                    "screen_name": string, "display_name": string, "bio": string, "email": string,
                    "phone": string, "age_band": string, "registered_at": {"type": "string", "format": "date-time"},
                    **subject_fields, "facts": account_facts}},
                "Group": {"type": "object", "properties": {
                    "name": string, "description": string, "member_count": {"type": "integer"},
                    "members": {"type": "array", "items": string}, **subject_fields, "facts": group_facts}},
                "Report": {"type": "object", "required": ["reporter", "reason"], "properties": {
                    "reporter": string, "account": string, "group": string, "item": {"type": "integer"},
                    "reason": {"enum": list(REPORT_REASONS)}, "comment": string, "external_id": string},
                    "description": "Exactly one of account, group or item."},
                "Upserted": {"type": "object", "properties": {
                    "external_id": string, "created": {"type": "boolean"}, "status": string}},
                "CaseList": {"type": "object", "properties": {
                    "count": {"type": "integer"}, "results": {"type": "array", "items": {"type": "object"}}}},
            },
        },
        "paths": {
            "/items": {"post": {
                "summary": "Submit an image, video or text item for scanning",
                "requestBody": {"content": {
                    "multipart/form-data": {"schema": {"type": "object", "required": ["file", "account"],
                        "properties": {"file": {"type": "string", "format": "binary"}, "account": string,
                                       "group": string, "kind": {"enum": ["image", "video"]},
                                       "external_id": string, "uploaded_at": {"type": "string", "format": "date-time"},
                                       "ip": string}}},
                    "application/json": {"schema": {"type": "object", "required": ["text", "account"],
                        "properties": {"text": string, "account": string, "group": string,
                                       "kind": {"enum": ["text"]}, "external_id": string}}},
                }},
                "responses": {**_responses(202, {"$ref": "#/components/schemas/Accepted"}, 400, 413, 415),
                              "200": {"description": "Already received (same account and external_id)"}},
            }},
            "/items/{id}": {"get": {
                "summary": "An item's status, hashes, signals and case",
                "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}],
                "responses": _responses(200, {"$ref": "#/components/schemas/Item"}, 404),
            }},
            "/accounts/{external_id}": {"put": {
                "summary": "Create or update an account with its text surfaces and behaviour facts",
                "parameters": [{"name": "external_id", "in": "path", "required": True, "schema": string}],
                "requestBody": _json({"$ref": "#/components/schemas/Account"}),
                "responses": {**_responses(200, {"$ref": "#/components/schemas/Upserted"}, 400),
                              "201": {"description": "Created"}},
            }},
            "/groups/{external_id}": {"put": {
                "summary": "Create or update a group with its text surfaces, members and behaviour facts",
                "parameters": [{"name": "external_id", "in": "path", "required": True, "schema": string}],
                "requestBody": _json({"$ref": "#/components/schemas/Group"}),
                "responses": {**_responses(200, {"$ref": "#/components/schemas/Upserted"}, 400),
                              "201": {"description": "Created"}},
            }},
            "/reports": {"post": {
                "summary": "Submit a user report against an account, group or item",
                "requestBody": _json({"$ref": "#/components/schemas/Report"}),
                "responses": _responses(202, {"$ref": "#/components/schemas/Accepted"}, 400),
            }},
            "/enforcements": {"get": {
                "summary": "Enforcement the platform must carry out (the pull side of the signed webhooks)",
                "parameters": [
                    {"name": "status", "in": "query", "schema": {"enum": ["unconfirmed", "confirmed", "all"]}},
                    {"name": "after", "in": "query", "schema": {"type": "integer"}, "description": "id cursor"},
                ],
                "responses": _responses(200, {"type": "object"}, 400),
            }},
            "/enforcements/{id}/confirm": {"post": {
                "summary": "Confirm that an enforcement was applied (or could not be)",
                "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}],
                "requestBody": _json({"type": "object", "required": ["result"], "properties": {
                    "result": {"enum": ["applied", "failed"]}, "detail": string}}),
                "responses": _responses(200, {"type": "object"}, 400, 404),
            }},
            "/cases": {"get": {
                "summary": "Cases with subject, queue, priority and a summary of their signals",
                "parameters": [
                    {"name": "status", "in": "query", "schema": {"enum": ["open", "closed", "all"]}},
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "maximum": 500}},
                    {"name": "offset", "in": "query", "schema": {"type": "integer"}},
                ],
                "responses": _responses(200, {"$ref": "#/components/schemas/CaseList"}, 400),
            }},
        },
    }
