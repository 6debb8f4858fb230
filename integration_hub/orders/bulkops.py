"""Set-based writes the order phases share: chunked id lists and UPDATEs grouped by value (few distinct
combinations: plain UPDATEs; per-row values: one ``executemany``), so a batch costs a fixed number of queries.
"""

from __future__ import annotations

from collections import defaultdict


def save_fields(model, objs, fields: list[str], max_groups: int = 20) -> None:
    """Write ``fields`` of ``objs``: one plain UPDATE per distinct combination of values when there are few
    (the usual case: every acknowledged order gets the same cleared fields), else per-row values (:func:`save_varying`)."""
    objs = list(objs)
    if not objs:
        return
    groups: dict[tuple, list[int]] = defaultdict(list)
    for o in objs:
        groups[tuple(repr(getattr(o, model._meta.get_field(f).attname)) for f in fields)].append(o.pk)
    if len(groups) > max_groups:
        save_varying(model, objs, fields)
        return
    first = {}
    for o in objs:
        first.setdefault(tuple(repr(getattr(o, model._meta.get_field(f).attname)) for f in fields), o)
    for key, pks in groups.items():
        sample = first[key]
        values = {model._meta.get_field(f).attname: getattr(sample, model._meta.get_field(f).attname) for f in fields}
        for chunk in chunks(pks):
            model.objects.filter(pk__in=chunk).update(**values)


def save_varying(model, objs, fields: list[str]) -> None:
    """Per-row values in one ``executemany`` of ``UPDATE … SET a = %s, b = %s WHERE id = %s`` (what
    ``bulk_update`` does, without its per-row CASE expression objects, which dominate at this size; and
    typed per column, so NULLs and JSON bind correctly on PostgreSQL too)."""
    from django.db import connection as db

    objs = list(objs)
    if not objs or not fields:
        return
    table, pk_col = model._meta.db_table, model._meta.pk.column
    model_fields = [model._meta.get_field(name) for name in fields]
    assignments = ", ".join(f"{db.ops.quote_name(f.column)} = %s" for f in model_fields)
    sql = f"UPDATE {db.ops.quote_name(table)} SET {assignments} WHERE {db.ops.quote_name(pk_col)} = %s"
    rows = [[f.get_db_prep_save(getattr(o, f.attname), db) for f in model_fields] + [o.pk] for o in objs]
    with db.cursor() as cur:
        for chunk in chunks(rows):
            cur.executemany(sql, chunk)


def save_split(model, objs, varying: list[str], constant: list[str]) -> None:
    """``varying`` fields differ per row (one CASE update each); ``constant`` ones are grouped (plain UPDATEs)."""
    if varying:
        save_varying(model, objs, varying)
    if constant:
        save_fields(model, objs, constant)


def chunks(seq, n=500):
    seq = list(seq)
    for i in range(0, len(seq), n):
        yield seq[i : i + n]


def group_by(items, key) -> dict:
    out: dict = defaultdict(list)
    for it in items:
        out[key(it)].append(it)
    return out
