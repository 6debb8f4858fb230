"""Query Predicates (``where``) and ``sort`` of the emulated query endpoints: ``=, !=, <, <=, >, >=, in (...),
not in (...), is defined, is not defined, is empty, contains, and, or, not(...)``, nested ``field(pred)`` on
objects / references / arrays. :func:`compile_where_plan` also says what narrows a query's candidates through an
index (:meth:`connectors.sandbox.commercetools.emulator.CommercetoolsEmulator._query`); the predicate still decides.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Callable

from .base import ct_error, parse_dt

_TOKEN_RX = re.compile(
    r"""
    \s*(?:
      (?P<str>"(?:[^"\\]|\\.)*")
    | (?P<num>-?\d+(?:\.\d+)?)
    | (?P<op><=|>=|!=|<>|=|<|>|\(|\)|,)
    | (?P<word>[A-Za-z_][A-Za-z0-9_.]*)
    )""",
    re.X,
)


def _tokenize(text: str) -> list[tuple[str, Any]]:
    out, pos = [], 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN_RX.match(text, pos)
        if not m or m.end() == pos:
            raise ct_error(
                400, "InvalidInput", f"Malformed parameter: where: syntax error at {pos}: {text[pos : pos + 20]!r}"
            )
        pos = m.end()
        if m.group("str") is not None:
            out.append(("val", json.loads(m.group("str"))))
        elif m.group("num") is not None:
            n = m.group("num")
            out.append(("val", float(n) if "." in n else int(n)))
        elif m.group("op") is not None:
            out.append(("op", m.group("op")))
        else:
            w = m.group("word")
            lw = w.lower()
            if lw in ("true", "false"):
                out.append(("val", lw == "true"))
            elif lw in ("and", "or", "not", "in", "is", "defined", "empty", "contains", "any", "all"):
                out.append(("kw", lw))
            else:
                out.append(("id", w))
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return out


def _cmp_values(a, b):
    """Normalise for comparison: ISO datetimes compare as instants."""
    da, db = parse_dt(a) if isinstance(a, str) else None, parse_dt(b) if isinstance(b, str) else None
    if da is not None and db is not None:
        return da, db
    return a, b


def _compare(actual, op: str, expected) -> bool:
    if actual is None:
        return op in ("!=", "<>") and expected is not None
    a, b = _cmp_values(actual, expected)
    try:
        if op == "=":
            return a == b
        if op in ("!=", "<>"):
            return a != b
        if op == "<":
            return a < b
        if op == "<=":
            return a <= b
        if op == ">":
            return a > b
        if op == ">=":
            return a >= b
    except TypeError:
        return False
    raise ct_error(400, "InvalidInput", f"Malformed parameter: where: unknown operator {op}")


class _Parser:
    """Compiles one ``where`` clause to a predicate, and notes what narrows its candidates through an index (the
    predicate still decides): ``hints`` (top-level ``=`` / ``in`` terms of a pure conjunction: every match has one of
    those values), ``lower`` (top-level ``>`` / ``>=`` terms: every match is at or above) and ``alts`` (any shape of
    ``and`` / ``or`` / nested ``field(...)`` over ``=`` / ``in`` terms: every match has, for one of the listed paths,
    one of its values; None when the clause does not say)."""

    def __init__(self, text: str):
        self.toks = _tokenize(text)
        self.i = 0
        self.level = 0  # nesting depth: only top-level conjunctions give index hints
        self.top_or = False
        self.hints: dict[str, set] = {}
        self.lower: dict[str, str | int] = {}
        self.alts: list[tuple[str, set]] | None = None

    def peek(self, k=0):
        j = self.i + k
        return self.toks[j] if j < len(self.toks) else (None, None)

    def take(self, kind=None, value=None):
        tok = self.peek()
        if tok[0] is None or (kind and tok[0] != kind) or (value is not None and tok[1] != value):
            raise ct_error(400, "InvalidInput", f"Malformed parameter: where: expected {value or kind}, got {tok[1]!r}")
        self.i += 1
        return tok

    def parse(self) -> Callable[[dict], bool]:
        fn, self.alts = self.expr()
        if self.peek()[0] is not None:
            raise ct_error(400, "InvalidInput", f"Malformed parameter: where: unexpected {self.peek()[1]!r}")
        return fn

    def expr(self):
        left, alts = self.term()
        while self.peek() == ("kw", "or"):
            self.take()
            if self.level == 0:
                self.top_or = True
            right, more = self.term()
            left = (lambda l, r: lambda o: l(o) or r(o))(left, right)
            alts = alts + more if alts is not None and more is not None else None
        return left, alts

    def term(self):
        left, alts = self.factor()
        while self.peek() == ("kw", "and"):
            self.take()
            right, more = self.factor()
            left = (lambda l, r: lambda o: l(o) and r(o))(left, right)
            alts = _narrower(alts, more)
        return left, alts

    def factor(self):
        tok = self.peek()
        if tok == ("kw", "not"):
            self.take()
            self.take("op", "(")
            self.level += 1
            inner, _alts = self.expr()
            self.level -= 1
            self.take("op", ")")
            return (lambda o: not inner(o)), None
        if tok == ("op", "("):
            self.take()
            self.level += 1
            inner = self.expr()
            self.level -= 1
            self.take("op", ")")
            return inner
        name = self.take("id")[1]
        return self.field(name.split("."))

    def hint(self, path: list[str], vals) -> None:
        if self.level == 0:
            key = ".".join(path)
            vals = {v for v in vals if isinstance(v, (str, int))}
            self.hints[key] = self.hints[key] & vals if key in self.hints else vals

    @staticmethod
    def alt(path: list[str], vals) -> list[tuple[str, set]] | None:
        """``path`` has one of ``vals``, when an exact index lookup finds every such object (plain strings and ints)."""
        if all(
            isinstance(v, int) and not isinstance(v, bool) or isinstance(v, str) and parse_dt(v) is None for v in vals
        ):
            return [(".".join(path), set(vals))]
        return None

    def values(self):
        self.take("op", "(")
        vals = [self.take("val")[1]]
        while self.peek() == ("op", ","):
            self.take()
            vals.append(self.take("val")[1])
        self.take("op", ")")
        return vals

    def field(self, path: list[str]):
        tok = self.peek()

        def get(o):
            for p in path:
                o = o.get(p) if isinstance(o, dict) else None
            return o

        def over(value, pred):  # arrays match if any element matches
            if isinstance(value, list):
                return any(pred(v) for v in value)
            return pred(value)

        if tok == ("op", "("):  # nested predicate on an object / reference / array
            self.take()
            self.level += 1
            inner, alts = self.expr()
            self.level -= 1
            self.take("op", ")")
            prefix = ".".join(path)
            return (lambda o: over(get(o), lambda v: isinstance(v, dict) and inner(v))), (
                [(f"{prefix}.{p}", vals) for p, vals in alts] if alts is not None else None
            )
        if tok[0] == "op":
            op = self.take()[1]
            val = self.take("val")[1]
            if op == "=":
                self.hint(path, [val])
            elif op in (">", ">=") and self.level == 0 and isinstance(val, (str, int)) and not isinstance(val, bool):
                self.lower[".".join(path)] = val
            return (lambda o: over(get(o), lambda v: _compare(v, op, val))), (
                self.alt(path, [val]) if op == "=" else None
            )
        if tok == ("kw", "in"):
            self.take()
            vals = self.values()
            self.hint(path, vals)
            if all(isinstance(x, str) and parse_dt(x) is None for x in vals):
                plain = set(vals)
                return (lambda o: over(get(o), lambda v: v in plain if isinstance(v, str) else False)), self.alt(
                    path, vals
                )
            return (lambda o: over(get(o), lambda v: any(_compare(v, "=", x) for x in vals))), self.alt(path, vals)
        if tok == ("kw", "not") and self.peek(1) == ("kw", "in"):
            self.take(), self.take()
            vals = self.values()
            return (lambda o: not over(get(o), lambda v: any(_compare(v, "=", x) for x in vals))), None
        if tok == ("kw", "is"):
            self.take()
            negate = False
            if self.peek() == ("kw", "not"):
                self.take()
                negate = True
            what = self.take("kw")[1]
            if what == "defined":
                return (lambda o: (get(o) is None) if negate else (get(o) is not None)), None
            if what == "empty":
                return (lambda o: bool(get(o)) if negate else (get(o) in ([], None))), None
            raise ct_error(400, "InvalidInput", f"Malformed parameter: where: is {what}")
        if tok == ("kw", "contains"):
            self.take()
            if self.peek() in (("kw", "any"), ("kw", "all")):
                mode = self.take()[1]
                vals = self.values()
                agg = any if mode == "any" else all
                return (lambda o: agg(x in (get(o) or []) for x in vals)), None
            val = self.take("val")[1]
            return (lambda o: val in (get(o) or [])), None
        raise ct_error(400, "InvalidInput", f"Malformed parameter: where: unexpected {tok[1]!r} after {'.'.join(path)}")


def _narrower(a: list[tuple[str, set]] | None, b: list[tuple[str, set]] | None) -> list[tuple[str, set]] | None:
    """Of two conjoined terms' alternatives, the one naming fewer values (either is a bound on the matches)."""
    if a is None or b is None:
        return a if b is None else b
    return a if sum(len(v) for _p, v in a) <= sum(len(v) for _p, v in b) else b


@dataclass
class WherePlan:
    """A compiled ``where``: the predicate and what narrows its candidates (see :class:`_Parser`)."""

    pred: Callable[[dict], bool]
    hints: dict[str, set]
    lower: dict[str, str | int]
    alts: list[tuple[str, set]] | None


def compile_where(clauses: list[str]) -> Callable[[dict], bool]:
    """Several ``where`` parameters are combined with ``and`` (as in ct)."""
    return compile_where_plan(clauses).pred


def compile_where_hints(clauses: list[str]) -> tuple[Callable[[dict], bool], dict[str, set]]:
    """The predicate plus ``{field path: allowed values}`` implied by top-level ``=`` / ``in`` terms of a
    pure conjunction (used to narrow candidates through an index; the predicate still decides)."""
    plan = compile_where_plan(clauses)
    return plan.pred, plan.hints


def compile_where_plan(clauses: list[str]) -> WherePlan:
    preds, hints, lower, alts = [], {}, {}, None
    for c in clauses:
        if not c or not c.strip():
            continue
        parser = _Parser(c)
        preds.append(parser.parse())
        alts = _narrower(alts, parser.alts)
        if not parser.top_or:
            for k, v in parser.hints.items():
                hints[k] = hints[k] & v if k in hints else set(v)
            for k, v in parser.lower.items():
                if k not in lower or (type(lower[k]) is type(v) and v > lower[k]):
                    lower[k] = v
    return WherePlan((lambda o: all(p(o) for p in preds)), hints, lower, alts)


def _sort_key_fn(sorts: list[str]):
    specs = []
    for s in sorts:
        parts = s.strip().split()
        if not parts:
            continue
        direction = parts[1].lower() if len(parts) > 1 else "asc"
        if direction not in ("asc", "desc"):
            raise ct_error(400, "InvalidInput", f"Malformed parameter: sort: {s}")
        specs.append((parts[0].split("."), direction == "desc"))
    return specs


def apply_sort(items: list[dict], sorts: list[str]) -> list[dict]:
    specs = _sort_key_fn(sorts)
    for path, desc in reversed(specs):  # stable multi-key sort

        def key(o, path=path):
            for p in path:
                o = o.get(p) if isinstance(o, dict) else None
            if isinstance(o, str):
                dt = parse_dt(o)
                if dt is not None:
                    return (1, dt.timestamp(), "")
                return (1, 0, o)
            return (0 if o is None else 1, o if isinstance(o, (int, float)) else 0, "")

        items.sort(key=key, reverse=desc)
    return items
