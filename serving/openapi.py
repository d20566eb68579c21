"""The OpenAPI document of the running app: FastAPI's, made exact for what is served now.

A static schema cannot know the served version's catalog, nor whether this replica asks for
tokens. So ``GET /openapi.json`` takes FastAPI's document and states:

- the genres a filter may name: the served version's, as an ``enum`` (any other is a 422);
- the bearer scheme on each route whose token is set (:mod:`serving.guard`);
- which model version, of which kind, answers.

Every schema-valid request is then one the app accepts (``st run --checks all`` finds nothing).
"""

from __future__ import annotations

import copy

from serving.guard import GuardSettings

FILTERS = "Filters"
GENRE_FIELDS = ("include_genres", "exclude_genres")
BEARER = {"bearer": {"type": "http", "scheme": "bearer"}}


def document(
    base: dict,
    *,
    genres: list[str] | None,
    settings: GuardSettings,
    version: str | None = None,
    kind: str | None = None,
) -> dict:
    """FastAPI's ``base`` document made exact for the served version and this replica's guard.

    Args:
        base: ``FastAPI.openapi()`` (not modified).
        genres: the served version's genres; None when no version is loaded (left open).
        settings: the replica's guard (which routes need a token).
        version: the model version served, and ``kind`` its model kind, for the description.

    Returns:
        A new document.
    """
    doc = copy.deepcopy(base)
    if genres is not None:
        _genres(doc, genres)
    _security(doc, settings)
    served = f"model version {version} (kind {kind})" if version else "no model version yet"
    doc["info"]["description"] = f"{doc['info'].get('description', '')} Serving: {served}."
    return doc


def _genres(doc: dict, genres: list[str]) -> None:
    schema = doc.get("components", {}).get("schemas", {}).get(FILTERS)
    if schema is None:
        return
    for name in GENRE_FIELDS:
        field = schema["properties"][name]
        if genres:
            field["items"] = {"type": "string", "enum": list(genres)}
        else:  # a version without genres: any name is unknown, so the list stays empty
            field["items"] = {"type": "string"}
            field["maxItems"] = 0
        field["description"] = "genres of the served version's catalog"


def _security(doc: dict, settings: GuardSettings) -> None:
    needed = False
    for path, operations in doc.get("paths", {}).items():
        for method, operation in operations.items():
            token, variable = settings.token_for(method.upper(), path)
            if token is None:
                operation.get("responses", {}).pop("401", None)
                continue
            needed = True
            operation["security"] = [{"bearer": []}]
            operation["description"] = (
                f"{operation.get('description', '')} Needs `Authorization: Bearer <token>` "
                f"({variable} is set on the server)."
            ).strip()
    if needed:
        doc.setdefault("components", {})["securitySchemes"] = dict(BEARER)
