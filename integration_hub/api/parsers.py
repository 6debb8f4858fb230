"""The API's JSON parser: DRF's, with the hub's nesting bound (:mod:`integration_hub.core.jsonsafe`).

Set in ``REST_FRAMEWORK["DEFAULT_PARSER_CLASSES"]``. A body nested deeper than ``jsonsafe.MAX_DEPTH``
is a 400 ``{"detail": "JSON parse error - JSON nested deeper than 64 levels"}`` instead of a
``RecursionError`` (500).
"""

from __future__ import annotations

import codecs

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser
from rest_framework.utils.json import strict_constant

from integration_hub.core import jsonsafe


class BoundedJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            text = codecs.getreader(encoding)(stream).read()
            return jsonsafe.loads(text, parse_constant=strict_constant if self.strict else None)
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {exc}") from None
