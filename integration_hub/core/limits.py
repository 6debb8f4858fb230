"""Bounds that every way in (console forms, the API, the CSV import) applies the same way."""

from __future__ import annotations

from django.core.validators import MaxValueValidator

MAX_SAFETY_BUFFER = 1_000_000  # units held back per SKU; anything larger is a typo (and the column is 32-bit)


def safety_buffer_validators() -> list:
    return [MaxValueValidator(MAX_SAFETY_BUFFER, message=f"A safety buffer is at most {MAX_SAFETY_BUFFER:,} units.")]
