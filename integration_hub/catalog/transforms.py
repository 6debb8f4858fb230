"""Identifier transforms between master identifiers and storefront SKUs (pure functions)."""

from __future__ import annotations

from dataclasses import dataclass


class TransformError(ValueError):
    pass


@dataclass(frozen=True)
class TransformSpec:
    strip_leading_zeros: bool = False
    pad_to_length: int | None = None
    fixed_length: int | None = None
    prefix: str = ""
    suffix: str = ""
    case: str = "keep"

    @classmethod
    def from_model(cls, t) -> "TransformSpec":
        return cls(t.strip_leading_zeros, t.pad_to_length, t.fixed_length, t.prefix, t.suffix, t.case)


def apply(identifier: str, spec: TransformSpec) -> str:
    """Master identifier → storefront SKU. Raises TransformError when the result breaks a rule."""
    if identifier is None:
        raise TransformError("identifier is empty")
    value = str(identifier).strip()
    if not value:
        raise TransformError("identifier is empty")
    if spec.strip_leading_zeros:
        value = value.lstrip("0") or "0"
    if spec.pad_to_length:
        if len(value) > spec.pad_to_length:
            raise TransformError(f"'{value}' is longer than {spec.pad_to_length} characters")
        value = value.zfill(spec.pad_to_length)
    if spec.fixed_length and len(value) != spec.fixed_length:
        raise TransformError(f"'{value}' is {len(value)} characters, expected exactly {spec.fixed_length}")
    value = f"{spec.prefix}{value}{spec.suffix}"
    if spec.case == "upper":
        value = value.upper()
    elif spec.case == "lower":
        value = value.lower()
    return value


def normalise(identifier: str) -> str:
    """Loose comparison key used to find near-matches: trimmed, upper-case, leading zeros stripped."""
    return str(identifier).strip().upper().lstrip("0") or "0"


def normalise_sql(column: str) -> str:
    """:func:`normalise` as a SQL expression over ``column`` (SQLite and PostgreSQL), for set-based matching in
    the database. Same steps; ``TRIM`` strips spaces only and SQLite's ``UPPER`` folds ASCII letters only."""
    return f"COALESCE(NULLIF(LTRIM(UPPER(TRIM({column})), '0'), ''), '0')"


def candidate_specs() -> list[TransformSpec]:
    """Transforms the catalogue audit tries when a storefront SKU matches no mapping."""
    specs = [TransformSpec(strip_leading_zeros=True)]
    specs += [TransformSpec(pad_to_length=n) for n in (6, 8, 10, 12, 13, 14)]
    specs += [
        TransformSpec(case="upper"),
        TransformSpec(case="lower"),
        TransformSpec(strip_leading_zeros=True, case="upper"),
    ]
    return specs


def describe(spec: TransformSpec | None) -> str:
    """Human wording of a transform ("strip leading zeros, upper case"), for exception titles and screens."""
    if spec is None:
        return "loose match (case / leading zeros)"
    parts = []
    if spec.strip_leading_zeros:
        parts.append("strip leading zeros")
    if spec.pad_to_length:
        parts.append(f"pad with zeros to {spec.pad_to_length}")
    if spec.fixed_length:
        parts.append(f"exactly {spec.fixed_length} characters")
    if spec.prefix:
        parts.append(f"prefix {spec.prefix!r}")
    if spec.suffix:
        parts.append(f"suffix {spec.suffix!r}")
    if spec.case != "keep":
        parts.append(f"{spec.case} case")
    return ", ".join(parts) or "identity"
