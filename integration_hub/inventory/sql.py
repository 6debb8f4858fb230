"""Portable bulk upsert (SQLite >= 3.24 and PostgreSQL share ``INSERT … ON CONFLICT … DO UPDATE``).

Django's ``bulk_create(update_conflicts=True)`` splits batches at SQLite's historic 999-parameter limit,
so a 300-row write becomes several statements; this writes up to ``chunk`` rows per statement (SQLite
>= 3.32 allows 32,766 parameters, PostgreSQL 65,535), keeping query counts independent of batch size.
"""

from __future__ import annotations

from datetime import datetime
from typing import Sequence

from django.db import connection


def upsert(
    model,
    columns: Sequence[str],
    conflict: Sequence[str],
    update: Sequence[str],
    rows: Sequence[Sequence],
    chunk: int = 2000,
) -> int:
    """``rows`` are tuples in ``columns`` order (column names, e.g. ``channel_id``). Returns rows written."""
    if not rows:
        return 0
    table = model._meta.db_table
    qn = connection.ops.quote_name
    cols = ", ".join(qn(c) for c in columns)
    sets = ", ".join(f"{qn(c)} = excluded.{qn(c)}" for c in update)
    placeholder = "(" + ", ".join(["%s"] * len(columns)) + ")"
    adapt = connection.ops.adapt_datetimefield_value
    written = 0
    with connection.cursor() as cur:
        for start in range(0, len(rows), chunk):
            part = rows[start : start + chunk]
            params = [adapt(v) if isinstance(v, datetime) else v for row in part for v in row]
            cur.execute(
                f"INSERT INTO {qn(table)} ({cols}) VALUES "
                + ", ".join([placeholder] * len(part))
                + f" ON CONFLICT ({', '.join(qn(c) for c in conflict)}) DO UPDATE SET {sets}",
                params,
            )
            written += len(part)
    return written
