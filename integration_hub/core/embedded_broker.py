"""The embedded broker: kombu's SQLAlchemy transport on a SQLite file, polled ten times a second.

A virtual kombu transport looks for new messages every ``Transport.polling_interval`` seconds while its queues
are empty — 1 s by default, so every hop through the embedded broker (a stock change's kick, its fan-out, the
drain: issue 19, item 3) waited up to a second. The transport option of that name cannot be used with this
transport (kombu passes every transport option on to SQLAlchemy's ``create_engine``, which refuses it), so this
subclass sets it. Settings route ``sqla+`` / ``sqlalchemy+`` broker URLs here (``CELERY_BROKER_TRANSPORT``; the
URL keeps the database part, ``sqlite:///…``).
"""

from __future__ import annotations

from kombu.transport import sqlalchemy

POLLING_INTERVAL = 0.1  # seconds: one small indexed SELECT per consumed queue, ten times a second, while idle


class Transport(sqlalchemy.Transport):
    polling_interval = POLLING_INTERVAL
