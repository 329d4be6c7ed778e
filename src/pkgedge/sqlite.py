"""What every SQLite database of pkgedge does on opening: switch to write-ahead logging.

On a fresh file, processes (the workers) opening it at once race for the switch, which needs
the database to itself, and SQLite answers "database is locked" at once: the busy timeout
does not cover a change of journal mode. A database already in WAL says so without a lock,
so the race is only ever on the first opening; it is retried here for up to ``wait`` seconds.
"""

from __future__ import annotations

import random
import sqlite3
import time
from typing import Any


def use_wal(conn: Any, wait: float = 10.0) -> None:
    """Put the database of ``conn`` (a DB-API connection to SQLite) in WAL mode."""
    deadline = time.monotonic() + wait
    while True:
        cursor = conn.cursor()
        try:
            cursor.execute("PRAGMA journal_mode")
            row = cursor.fetchone()
            if row is not None and str(row[0]).lower() == "wal":
                return
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
        finally:
            cursor.close()
        time.sleep(0.005 + random.random() * 0.02)
