"""What a storefront SKU may look like, checked the same way by the console form and the CSV import."""

from __future__ import annotations

import re

BAD_CHARS = re.compile(r"[\s<>\"'`\x00-\x1f\x7f]")


def sku_problem(sku: str) -> str | None:
    """Why ``sku`` cannot be a storefront SKU (None when it can): no whitespace (a space, tab or embedded
    newline is a broken cell, never a SKU the storefront lists), no markup or quote characters, no control
    characters."""
    m = BAD_CHARS.search(sku or "")
    if m is None:
        return None
    ch = m.group(0)
    what = {" ": "a space", "\n": "a line break", "\r": "a line break", "\t": "a tab"}.get(ch)
    if what is None:
        what = "markup or quote characters" if ch in "<>\"'`" else "a control character"
    return f"contains {what}: SKUs have no spaces, line breaks, markup or quotes"
