"""Owner-only files for the hub's local state: ``var/`` is 0700, SQLite databases and their -wal/-shm 0600.

Entry points (manage.py, wsgi.py, celery.py) set the process umask to 0o077, so everything the hub writes
is owner-only; this module also tightens the SQLite files whenever a connection opens, whichever process
opened it (a test runner, a shell), because SQLite creates -wal/-shm with the database file's mode.
"""

from __future__ import annotations

import os
from pathlib import Path

PRIVATE_UMASK = 0o077
DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) if missing and make it owner-only."""
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    if path.stat().st_mode & 0o777 != DIR_MODE:
        os.chmod(path, DIR_MODE)
    return path


def restrict_sqlite_files(sender, connection, **kwargs) -> None:
    """``connection_created`` receiver: chmod 0600 the SQLite file and its journals."""
    if connection.vendor != "sqlite":
        return
    name = str(connection.settings_dict.get("NAME") or "")
    if not name or name == ":memory:" or name.startswith("file:"):
        return
    for path in (name, f"{name}-wal", f"{name}-shm", f"{name}-journal"):
        try:
            if os.stat(path).st_mode & 0o777 != FILE_MODE:
                os.chmod(path, FILE_MODE)
        except FileNotFoundError:
            continue
        except PermissionError:  # not ours to change (a shared file): leave it
            continue
