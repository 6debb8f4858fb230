"""Template filters of the staff screens: money, safe links, addresses, one date format."""

from __future__ import annotations

from datetime import UTC
from decimal import Decimal
from urllib.parse import urlsplit

from django import template
from django.utils import timezone

register = template.Library()

DATE_FORMAT = "%Y-%m-%d %H:%M"  # one date format on every screen (UTC, 24 h)


@register.filter
def money(cents, currency: str = "") -> str:
    """Minor units → "12.50 GBP" (two decimals); "—" when unknown."""
    if cents is None or cents == "":
        return "—"
    value = (Decimal(int(cents)) / 100).quantize(Decimal("0.01"))
    return f"{value:,.2f}" + (f" {currency}" if currency else "")


@register.filter
def times(a, b):
    """``unit_price_cents|times:quantity`` (None stays None)."""
    if a is None or b is None:
        return None
    return int(a) * int(b)


@register.filter
def http_url(url) -> str:
    """The URL when it is an absolute http(s) link, else "" (no javascript: or relative links from a payload)."""
    url = str(url or "").strip()
    try:
        parts = urlsplit(url)
    except ValueError:
        return ""
    return url if parts.scheme in ("http", "https") and parts.netloc else ""


@register.filter
def person(address) -> str:
    """First + last name (company when no name) of an address dict."""
    a = address or {}
    name = " ".join(p for p in (a.get("first_name", ""), a.get("last_name", "")) if p).strip()
    return name or a.get("company", "")


@register.filter
def address_lines(address) -> list[str]:
    a = address or {}
    city = " ".join(p for p in (a.get("postal_code", ""), a.get("city", "")) if p)
    return [
        line
        for line in (
            a.get("company", "") if person(a) != a.get("company") else "",
            a.get("street", ""),
            a.get("street2", ""),
            city,
            a.get("region", ""),
            a.get("country", ""),
        )
        if line
    ]


@register.filter
def when(value) -> str:
    """The screens' one date format: 2026-12-02 05:30 UTC."""
    if not value:
        return "—"
    if timezone.is_aware(value):
        value = value.astimezone(UTC)
    return value.strftime(DATE_FORMAT) + " UTC"
