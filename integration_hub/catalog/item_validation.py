"""What an item-master row may hold, checked the same way by the CSV/XLSX import and the master pull.

* SKU format per connection: the storefront SKU rules of :func:`.validation.sku_problem` (no spaces, markup,
  quotes or control characters), the model's length, and — for the connection the rows come from (or every
  active transform when none is named) — the length and leading-zero rules its
  :class:`~.models.IdentifierTransform` rows describe: a fixed length, a pad length a SKU may not exceed, and
  ``allowed_characters`` / ``max_length`` / ``keep_leading_zeros`` in the connection's ``options["sku_rules"]``.
  The wording of a refused rule is :func:`.transforms.describe`'s.
* GTIN: 8, 12, 13 or 14 digits with a valid GS1 check digit (mod 10, weights 3/1 from the right).
* Weight: a positive decimal with a unit (g, kg, lb, oz); a unit without a weight, or a weight without a
  unit, is refused.
* Unit cost: a non-negative decimal with at most 4 decimal places (the model's precision).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from .transforms import TransformError, TransformSpec, apply, describe
from .validation import sku_problem

GTIN_LENGTHS = (8, 12, 13, 14)
WEIGHT_UNITS = ("g", "kg", "lb", "oz")
GRAMS = {"g": Decimal("1"), "kg": Decimal("1000"), "lb": Decimal("453.59237"), "oz": Decimal("28.349523125")}
SKU_MAX = 100
DIGITS = re.compile(r"^[0-9]+$")
MAX_DECIMAL = Decimal("99999999")  # max_digits=12, decimal_places=4


def gtin_check_digit(body: str) -> int:
    """The GS1 check digit of ``body`` (the GTIN without its last digit)."""
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return (10 - total % 10) % 10


def gtin_problem(value: str) -> str | None:
    """Why ``value`` is not a GTIN-8/12/13/14 (None when it is)."""
    if not DIGITS.match(value or ""):
        return f"barcode {value!r} is not digits only (a GTIN-8/12/13/14)"
    if len(value) not in GTIN_LENGTHS:
        return f"barcode {value!r} has {len(value)} digits; a GTIN has 8, 12, 13 or 14"
    want = gtin_check_digit(value[:-1])
    if int(value[-1]) != want:
        return f"barcode {value!r} has check digit {value[-1]}, expected {want}"
    return None


def parse_decimal(value: str, what: str, *, positive: bool) -> tuple[Decimal | None, str | None]:
    """(value, None) or (None, why not). Accepts a plain decimal ('12', '0.25'); no thousands separators."""
    text = (value or "").strip()
    try:
        number = Decimal(text)
    except InvalidOperation:
        return None, f"{what} {value!r} is not a number"
    if not number.is_finite():
        return None, f"{what} {value!r} is not a number"
    if positive and number <= 0:
        return None, f"{what} {value!r} must be more than 0"
    if not positive and number < 0:
        return None, f"{what} {value!r} must not be negative"
    if number.as_tuple().exponent < -4:
        return None, f"{what} {value!r} has more than 4 decimal places"
    if number >= MAX_DECIMAL:
        return None, f"{what} {value!r} is too large"
    return number, None


def weight_problems(weight: str, unit: str) -> tuple[Decimal | None, str, list[str]]:
    """(weight, unit, problems) of a row's weight columns: both empty, or a positive weight with a unit."""
    unit = (unit or "").strip().lower()
    if not (weight or "").strip():
        return None, "", ([f"weight_unit {unit!r} given without a weight"] if unit else [])
    number, why = parse_decimal(weight, "weight", positive=True)
    problems = [why] if why else []
    if not unit:
        problems.append("weight has no weight_unit (g, kg, lb or oz)")
    elif unit not in WEIGHT_UNITS:
        problems.append(f"weight_unit {unit!r} is not one of g, kg, lb, oz")
    return number, unit, problems


def grams(weight: Decimal | None, unit: str) -> Decimal | None:
    """``weight`` in grams (for comparing weights given in different units)."""
    if weight is None or unit not in GRAMS:
        return None
    return (Decimal(weight) * GRAMS[unit]).quantize(Decimal("0.01"))


@dataclass(frozen=True)
class SkuRules:
    """The SKU format rules of one connection: from its ``options["sku_rules"]`` and its active transforms."""

    allowed: str = ""  # a regular-expression character class body, e.g. "A-Z0-9-"; empty = any the storefront accepts
    max_length: int = SKU_MAX
    keep_leading_zeros: bool = True  # False: a SKU may not start with 0 (the storefront strips them)
    specs: tuple[TransformSpec, ...] = ()

    @classmethod
    def for_connection(cls, connection=None) -> "SkuRules":
        from .models import IdentifierTransform

        opts = ((getattr(connection, "options", None) or {}).get("sku_rules") or {}) if connection is not None else {}
        qs = IdentifierTransform.objects.filter(active=True)
        if connection is not None:
            qs = qs.filter(connection=connection)
        specs = tuple(TransformSpec.from_model(t) for t in qs.order_by("name"))
        return cls(
            allowed=str(opts.get("allowed_characters") or ""),
            max_length=min(SKU_MAX, int(opts.get("max_length") or SKU_MAX)),
            keep_leading_zeros=bool(opts.get("keep_leading_zeros", True)),
            specs=specs,
        )

    def problems(self, sku: str) -> list[str]:
        out = []
        if not sku:
            return ["sku is empty"]
        bad = sku_problem(sku)
        if bad:
            out.append(f"sku {bad}")
        if len(sku) > self.max_length:
            out.append(f"sku is longer than {self.max_length} characters")
        if self.allowed and not re.fullmatch(f"[{self.allowed}]+", sku):
            out.append(f"sku {sku!r} has characters outside [{self.allowed}]")
        if not self.keep_leading_zeros and sku.startswith("0"):
            out.append(f"sku {sku!r} starts with 0 (this connection's SKUs have no leading zeros)")
        for spec in self.specs:
            try:
                apply(sku, spec)
            except TransformError as exc:
                out.append(f"sku does not fit the transform ({describe(spec)}): {exc}")
        return out
