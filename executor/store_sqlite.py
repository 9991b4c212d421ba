"""The queue and history in one SQLite file (`<data>/latentloom.db`), so nothing queued or finished is lost.

Rules: every change is one transaction; WAL journal with `synchronous=NORMAL` (a process crash loses nothing,
a power cut may lose the last commits); documents (prompts, outputs) are stored as JSON text. The schema evolves
through `MIGRATIONS`, a list of small named steps applied in order and recorded in `PRAGMA user_version`.
Queue order is `(number, seq)`: `seq` is the insertion order, so equal numbers run first-queued first.
"""
from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any, Callable

from executor.queue import (HISTORY_MAX, DuplicatePromptError, HistoryEntry, QueueItem, QueueStore, RecoverPolicy,
                            failed_by_restart, wrap_seed)

DB_NAME = "latentloom.db"


def _create_tables(db: sqlite3.Connection) -> None:
    _run_script(db, """
        CREATE TABLE queue (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            prompt_id TEXT NOT NULL UNIQUE,
            number REAL NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('pending', 'running')),
            item TEXT NOT NULL,
            queued_at REAL NOT NULL
        );
        CREATE INDEX queue_order ON queue (state, number, seq);
        CREATE TABLE history (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            prompt_id TEXT NOT NULL UNIQUE,
            entry TEXT NOT NULL,
            finished_at REAL NOT NULL
        );
        CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
        CREATE TABLE seed_streams (stream TEXT PRIMARY KEY, value TEXT NOT NULL);
    """)


def _run_script(db: sqlite3.Connection, script: str) -> None:
    # Not `executescript`: it commits first, which would break the migration's transaction.
    for statement in filter(str.strip, script.split(";")):
        db.execute(statement)


MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_create_tables]


def _dumps(value: Any) -> str:
    # Node UI outputs may hold values JSON cannot carry; keep their string form rather than fail the run.
    return json.dumps(value, separators=(",", ":"), default=str)


class SqliteQueueStore(QueueStore):
    def __init__(self, path: str | Path, history_max: int = HISTORY_MAX) -> None:
        """`path`: the database file, or a folder to hold `latentloom.db`."""
        path = Path(path)
        if path.is_dir():
            path = path / DB_NAME
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.history_max = history_max
        self.db = sqlite3.connect(path, isolation_level=None)  # autocommit; transactions are explicit
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self._migrate()

    def _migrate(self) -> None:
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version > len(MIGRATIONS):
            raise RuntimeError(f"{self.path} was written by a newer latentloom (schema {version})")
        for step in range(version, len(MIGRATIONS)):
            with self._transaction():
                MIGRATIONS[step](self.db)
                self.db.execute(f"PRAGMA user_version = {step + 1}")

    def _transaction(self):
        return _Transaction(self.db)

    # --- queue -------------------------------------------------------------------------------------------------
    def next_number(self, front: bool = False) -> int:
        with self._transaction():
            row = self.db.execute("SELECT value FROM counters WHERE name = 'number'").fetchone()
            value = row[0] if row else 0
            self.db.execute("INSERT OR REPLACE INTO counters (name, value) VALUES ('number', ?)", (value + 1,))
        return -value if front else value

    def put(self, item: QueueItem) -> None:
        try:
            with self._transaction():
                self.db.execute("INSERT INTO queue (prompt_id, number, state, item, queued_at) "
                                "VALUES (?, ?, 'pending', ?, ?)",
                                (item.prompt_id, float(item.number), _dumps(item.to_record()), time.time()))
        except sqlite3.IntegrityError:
            raise DuplicatePromptError(f"prompt {item.prompt_id!r} is already queued") from None

    def claim(self) -> QueueItem | None:
        with self._transaction():
            row = self.db.execute("SELECT seq, item FROM queue WHERE state = 'pending' "
                                  "ORDER BY number, seq LIMIT 1").fetchone()
            if row is None:
                return None
            self.db.execute("UPDATE queue SET state = 'running' WHERE seq = ?", (row[0],))
        return QueueItem.from_record(json.loads(row[1]))

    def requeue(self, prompt_id: str) -> bool:
        with self._transaction():
            cur = self.db.execute("UPDATE queue SET state = 'pending' WHERE prompt_id = ? AND state = 'running'",
                                  (prompt_id,))
        return cur.rowcount > 0

    def finish(self, entry: HistoryEntry) -> None:
        with self._transaction():
            self._write_history(entry)

    def _write_history(self, entry: HistoryEntry) -> None:
        pid = entry.item.prompt_id
        self.db.execute("DELETE FROM queue WHERE prompt_id = ? AND state = 'running'", (pid,))
        self.db.execute("DELETE FROM history WHERE prompt_id = ?", (pid,))  # a reused id moves to the end
        self.db.execute("INSERT INTO history (prompt_id, entry, finished_at) VALUES (?, ?, ?)",
                        (pid, _dumps(entry.to_comfy()), time.time()))
        # The newest history_max entries stay; found through the primary key, so trimming stays cheap.
        self.db.execute("DELETE FROM history WHERE seq <= "
                        "(SELECT seq FROM history ORDER BY seq DESC LIMIT 1 OFFSET ?)", (self.history_max,))

    def pending(self) -> list[QueueItem]:
        rows = self.db.execute("SELECT item FROM queue WHERE state = 'pending' ORDER BY number, seq")
        return [QueueItem.from_record(json.loads(r[0])) for r in rows]

    def running(self) -> list[QueueItem]:
        rows = self.db.execute("SELECT item FROM queue WHERE state = 'running' ORDER BY seq")
        return [QueueItem.from_record(json.loads(r[0])) for r in rows]

    def remaining(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM queue").fetchone()[0]

    def delete_pending(self, prompt_ids: list[str]) -> int:
        with self._transaction():
            count = 0
            for pid in prompt_ids:
                count += self.db.execute("DELETE FROM queue WHERE prompt_id = ? AND state = 'pending'",
                                         (pid,)).rowcount
        return count

    def clear_pending(self) -> int:
        with self._transaction():
            return self.db.execute("DELETE FROM queue WHERE state = 'pending'").rowcount

    def recover(self, policy: RecoverPolicy) -> list[str]:
        with self._transaction():
            rows = self.db.execute("SELECT item FROM queue WHERE state = 'running' ORDER BY seq").fetchall()
            items = [QueueItem.from_record(json.loads(r[0])) for r in rows]
            if policy == "requeue":
                self.db.execute("UPDATE queue SET state = 'pending' WHERE state = 'running'")
            else:
                now = int(time.time() * 1000)
                for item in items:
                    self._write_history(failed_by_restart(item, now))
        return [item.prompt_id for item in items]

    # --- history -----------------------------------------------------------------------------------------------
    def history(self, max_items: int | None = None, offset: int | None = None) -> dict[str, dict[str, Any]]:
        if offset is not None:
            rows = self.db.execute("SELECT prompt_id, entry FROM history ORDER BY seq LIMIT ? OFFSET ?",
                                   (-1 if max_items is None else max_items, max(offset, 0)))
        elif max_items is not None:
            rows = self.db.execute("SELECT prompt_id, entry FROM (SELECT seq, prompt_id, entry FROM history "
                                   "ORDER BY seq DESC LIMIT ?) ORDER BY seq", (max_items,))
        else:
            rows = self.db.execute("SELECT prompt_id, entry FROM history ORDER BY seq")
        return {pid: json.loads(entry) for pid, entry in rows}

    def history_entry(self, prompt_id: str) -> dict[str, Any] | None:
        row = self.db.execute("SELECT entry FROM history WHERE prompt_id = ?", (prompt_id,)).fetchone()
        return json.loads(row[0]) if row else None

    def delete_history(self, prompt_ids: list[str]) -> int:
        with self._transaction():
            return sum(self.db.execute("DELETE FROM history WHERE prompt_id = ?", (pid,)).rowcount
                       for pid in prompt_ids)

    def clear_history(self) -> int:
        with self._transaction():
            return self.db.execute("DELETE FROM history").rowcount

    # --- seed counters -----------------------------------------------------------------------------------------
    def advance_seed(self, stream: str, start: int, delta: int, lo: int, hi: int) -> int:
        with self._transaction():
            row = self.db.execute("SELECT value FROM seed_streams WHERE stream = ?", (stream,)).fetchone()
            # Seeds reach 2**64 - 1, past SQLite's signed 64-bit integers: stored as text.
            value = start if row is None else wrap_seed(int(row[0]) + delta, lo, hi)
            self.db.execute("INSERT OR REPLACE INTO seed_streams (stream, value) VALUES (?, ?)", (stream, str(value)))
        return value

    def close(self) -> None:
        self.db.close()


class _Transaction:
    """`BEGIN IMMEDIATE` … `COMMIT`, or `ROLLBACK` when the block raises."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type, exc, tb) -> None:
        self.db.execute("COMMIT" if exc_type is None else "ROLLBACK")
