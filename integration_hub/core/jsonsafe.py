"""Bounded-depth JSON parsing for every inbound body (signed webhooks, the REST API).

Python's ``json`` decoder recurses once per nesting level, so a small body nested a thousand levels deep
raises ``RecursionError`` (a 500) in the decoder or in whatever walks the result next. No payload the hub
accepts is nested more than a dozen levels, so bodies deeper than :data:`MAX_DEPTH` are refused before
they are decoded, with :class:`JSONDepthError` — a ``ValueError``, so the callers' existing "malformed
JSON" handling answers 400 with its message.

The depth pre-scan counts brackets outside string literals (strings removed with one regular expression),
so it costs one pass over the body and never recurses.
"""

from __future__ import annotations

import json
import re

MAX_DEPTH = 64

# a string literal; the closing quote is optional so that an unterminated string matches once, to the end
# (a required quote would make every later quote a new start: quadratic time on '"\\"\\"\\"…')
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")


class JSONDepthError(ValueError):
    """The document nests arrays/objects deeper than allowed."""


def _text(data: bytes | bytearray | str) -> str:
    if isinstance(data, (bytes, bytearray)):
        return bytes(data).decode(json.detect_encoding(data), "surrogatepass")  # as json.loads does
    return data


def check_depth(text: str, max_depth: int = MAX_DEPTH) -> None:
    """Raise :class:`JSONDepthError` if ``text`` nests deeper than ``max_depth`` levels."""
    if text.count("[") + text.count("{") <= max_depth:
        return  # cannot be deeper than the number of opening brackets
    depth = 0
    for m in _BRACKET.finditer(_STRING.sub('""', text)):
        if m.group() in "[{":
            depth += 1
            if depth > max_depth:
                raise JSONDepthError(f"JSON nested deeper than {max_depth} levels")
        else:
            depth -= 1


def loads(data: bytes | bytearray | str, max_depth: int = MAX_DEPTH, **kwargs):
    """``json.loads`` that refuses documents nested deeper than ``max_depth`` (``JSONDepthError``, a
    ``ValueError``); undecodable bytes raise ``UnicodeDecodeError`` (also a ``ValueError``)."""
    text = _text(data)
    check_depth(text, max_depth)
    try:
        return json.loads(text, **kwargs)
    except RecursionError:  # a caller already deep in its own stack: still a refusal, never a crash
        raise JSONDepthError("JSON nested too deeply") from None
