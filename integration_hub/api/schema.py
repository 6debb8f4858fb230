"""OpenAPI post-processing: document the error answers every endpoint can give.

drf-spectacular documents the success responses it can infer; the errors DRF itself produces are left out,
so a client (or the fuzz run in tests/api/test_fuzz.py) sees undocumented status codes. This hook adds, per
operation: 401 (missing/invalid credentials — any operation with a security requirement), 403 (the role
may not do this, or a session call without its CSRF token), 404 (an unknown id in the path, or a page past
the end, or an unknown ``?format=``), 400 (validation of a body or of query filters). Registered in ``SPECTACULAR_SETTINGS
["POSTPROCESSING_HOOKS"]`` after drf-spectacular's own enum hook
(https://drf-spectacular.readthedocs.io/en/latest/customization.html#step-7-preprocessing-hooks-and-postprocessing-hooks).
"""

from __future__ import annotations

DETAIL = {"$ref": "#/components/schemas/ErrorDetail"}
VALIDATION = {"$ref": "#/components/schemas/ValidationErrorBody"}


def _response(description: str, schema: dict, media_types) -> dict:
    return {"description": description, "content": {m: {"schema": schema} for m in media_types}}


def _media_types(responses: dict) -> list[str]:
    """Errors are rendered by the renderer the request negotiated: JSON, or the success response's type
    (e.g. the schema view's YAML for ``?format=yaml``)."""
    types = ["application/json"]
    for code, response in responses.items():
        if str(code).startswith("2"):
            types += [m for m in response.get("content", {}) if m not in types]
    return types


def document_error_responses(result, generator, request, public):
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas.setdefault(
        "ErrorDetail",
        {
            "type": "object",
            "properties": {"detail": {"type": "string"}},
            "required": ["detail"],
        },
    )
    schemas.setdefault(
        "ValidationErrorBody",
        {
            "description": "Field name (or non_field_errors / detail) → messages; a filter error may be a plain list.",
            "anyOf": [{"type": "object", "additionalProperties": True}, {"type": "array", "items": {"type": "string"}}],
        },
    )
    for path, operations in result.get("paths", {}).items():
        for method, op in operations.items():
            responses = op.setdefault("responses", {})
            query = {p["name"] for p in op.get("parameters", []) if p.get("in") == "query"}
            media = _media_types(responses)
            if op.get("security"):
                responses.setdefault("401", _response("Missing, invalid or expired credentials.", DETAIL, media))
                responses.setdefault(
                    "403", _response("The caller's role does not allow this (or CSRF failed).", DETAIL, media)
                )
            if "{" in path or "page" in query or "format" in query:  # DRF: unknown ?format= is a 404
                responses.setdefault("404", _response("No such object, or no such page.", DETAIL, media))
            if method in ("post", "put", "patch") or query - {"page", "format", "lang"}:
                responses.setdefault("400", _response("Invalid input.", VALIDATION, media))
    return result
