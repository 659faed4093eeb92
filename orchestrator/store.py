"""state.db: runs, iterations, task results (the benchmark cache), events. SQLite in WAL mode.

A task result is one sample: the same code version run on the same task again adds a draw (0, 1, ...), with
what it was drawn for (`purpose`: "baseline", "gate" when judged as a candidate, "incumbent" when re-measured
as the best after it was chosen), so the gate can tell a lucky draw that chose a version from fresh ones.

results.tsv is a view of the decided iterations, rewritten atomically from here after each decision.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from orchestrator.core.errors import Decision, Stage
from orchestrator.core.workspace import atomic_write

RESULTS = """
CREATE TABLE IF NOT EXISTS results (
    code_hash TEXT NOT NULL,
    task_id TEXT NOT NULL,
    draw INTEGER NOT NULL DEFAULT 0,
    split TEXT NOT NULL,
    reward REAL,
    error_class TEXT NOT NULL DEFAULT '',
    error TEXT NOT NULL DEFAULT '',
    duration_s REAL NOT NULL DEFAULT 0,
    cost_usd REAL,
    created_at REAL NOT NULL,
    purpose TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (code_hash, task_id, draw)
);
"""

SCHEMA = RESULTS + """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    started_at REAL NOT NULL,
    finished_at REAL,
    config_hash TEXT NOT NULL,
    stop_reason TEXT
);
CREATE TABLE IF NOT EXISTS iterations (
    n INTEGER PRIMARY KEY,
    run_id INTEGER,
    started_at REAL NOT NULL,
    decided_at REAL NOT NULL,
    decision TEXT NOT NULL,
    stage TEXT NOT NULL DEFAULT '',
    reason TEXT NOT NULL DEFAULT '',
    val_score REAL,
    best_before REAL,
    commit_sha TEXT NOT NULL DEFAULT '',
    code_hash TEXT NOT NULL DEFAULT '',
    evals_passed INTEGER NOT NULL DEFAULT 0,
    evals_total INTEGER NOT NULL DEFAULT 0,
    backend TEXT NOT NULL DEFAULT '',
    model TEXT NOT NULL DEFAULT '',
    proposal_status TEXT NOT NULL DEFAULT '',
    cost_usd REAL,
    input_tokens INTEGER NOT NULL DEFAULT 0,
    output_tokens INTEGER NOT NULL DEFAULT 0,
    cache_tokens INTEGER NOT NULL DEFAULT 0,
    duration_s REAL NOT NULL DEFAULT 0,
    bench_s REAL NOT NULL DEFAULT 0,
    backend_s REAL NOT NULL DEFAULT 0,
    tasks_run INTEGER NOT NULL DEFAULT 0,
    tasks_cached INTEGER NOT NULL DEFAULT 0,
    tasks_skipped INTEGER NOT NULL DEFAULT 0,
    summary TEXT NOT NULL DEFAULT '',
    config_hash TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts REAL NOT NULL,
    iteration INTEGER,
    kind TEXT NOT NULL,
    message TEXT NOT NULL,
    data TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS kv (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""

FRESH = ("baseline", "incumbent")   # draws of a best made after it was chosen (the base commit was not chosen)

TSV_COLUMNS = [
    "iteration", "val_score", "commit", "evals_passed", "evals_total", "timestamp",
    "decision", "reason", "backend", "cost_usd", "duration_s",
]


@dataclass
class IterationRecord:
    n: int
    started_at: float
    decided_at: float
    decision: Decision
    stage: Stage = Stage.NONE
    reason: str = ""
    val_score: float | None = None
    best_before: float | None = None
    commit_sha: str = ""
    code_hash: str = ""
    evals_passed: int = 0
    evals_total: int = 0
    backend: str = ""
    model: str = ""
    proposal_status: str = ""
    cost_usd: float | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cache_tokens: int = 0
    duration_s: float = 0.0
    bench_s: float = 0.0
    backend_s: float = 0.0
    tasks_run: int = 0
    tasks_cached: int = 0
    tasks_skipped: int = 0
    summary: str = ""
    config_hash: str = ""
    run_id: int | None = None

    def staged_reason(self) -> str:
        """The reason with the stage that gave it (`guard: ...`), as the console shows it."""
        return f"{self.stage}: {self.reason}" if self.stage and self.reason else self.stage or self.reason


@dataclass
class StoredResult:
    task_id: str
    split: str
    reward: float | None
    error_class: str
    error: str
    duration_s: float
    cost_usd: float | None
    draw: int = 0
    purpose: str = ""


class Store:
    def __init__(self, path: Path, *, readonly: bool = False):
        """`readonly` is for readers beside a running daemon (status, report): no schema, no writes."""
        self.path = path
        # One connection for every thread of the run (candidates in flight, the task pool's landings): each use
        # of it holds this lock, and a transaction holds it throughout, so two threads' statements never mix.
        self._lock = threading.RLock()
        if readonly:
            self.conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=30,
                                        check_same_thread=False)
            self.conn.row_factory = sqlite3.Row
            return
        self.conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        self.conn.row_factory = sqlite3.Row
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        self._upgrade()
        self.conn.executescript(SCHEMA)

    def _upgrade(self) -> None:
        """A workspace from before samples: its results become draw 0 of each code version and task."""
        cols = {r[1] for r in self._all("PRAGMA table_info(results)")}
        if not cols or "draw" in cols:
            return
        with self.tx() as c:
            c.execute("ALTER TABLE results RENAME TO results_v1")
            c.execute(RESULTS)
            c.execute("INSERT INTO results (code_hash, task_id, split, reward, error_class, error, duration_s, cost_usd, "
                      "created_at) SELECT code_hash, task_id, split, reward, error_class, error, duration_s, cost_usd, "
                      "created_at FROM results_v1")
            c.execute("DROP TABLE results_v1")

    def close(self) -> None:
        with self._lock:
            self.conn.close()

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")

    def _exec(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        with self._lock:
            return self.conn.execute(sql, params)

    def _all(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self.conn.execute(sql, params).fetchall()

    def _one(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Row | None:
        with self._lock:
            return self.conn.execute(sql, params).fetchone()

    # -- runs ------------------------------------------------------------------------------------------
    def start_run(self, config_hash: str) -> int:
        cur = self._exec(
            "INSERT INTO runs (started_at, config_hash) VALUES (?, ?)", (time.time(), config_hash))
        return int(cur.lastrowid)

    def finish_run(self, run_id: int, reason: str) -> None:
        self._exec("UPDATE runs SET finished_at=?, stop_reason=? WHERE id=?", (time.time(), reason, run_id))

    # -- iterations ------------------------------------------------------------------------------------
    def record_iteration(self, rec: IterationRecord, kv: dict[str, str] | None = None) -> None:
        """The decision and the state it moves (suite, ...) land in one transaction."""
        names = [f.name for f in fields(IterationRecord)]
        with self.tx() as c:
            c.execute(
                f"INSERT OR REPLACE INTO iterations ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
                [getattr(rec, n) for n in names],
            )
            for key, value in (kv or {}).items():
                c.execute("INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)", (key, value))

    def iterations(self) -> list[IterationRecord]:
        rows = self._all("SELECT * FROM iterations ORDER BY n")
        return [_record(r) for r in rows]

    def iteration(self, n: int) -> IterationRecord | None:
        row = self._one("SELECT * FROM iterations WHERE n=?", (n,))
        return _record(row) if row else None

    def next_iteration(self) -> int:
        row = self._one("SELECT MAX(n) FROM iterations")
        return 0 if row[0] is None else int(row[0]) + 1

    def free_iteration(self, taken: set[int]) -> int:
        """The lowest n >= 1 neither recorded nor `taken` (in flight): after a crash, the holes it left first."""
        recorded = {int(r[0]) for r in self._all("SELECT n FROM iterations WHERE n >= 1")}
        n = 1
        while n in recorded or n in taken:
            n += 1
        return n

    def best(self) -> IterationRecord | None:
        """The last accepted iteration, or the baseline: the last decided (with candidates in flight, iteration 7
        may be accepted before 5 is, on top of it)."""
        row = self._one("SELECT * FROM iterations WHERE decision IN ('baseline', 'accepted') "
                        "ORDER BY decided_at DESC, n DESC LIMIT 1")
        return _record(row) if row else None

    def spend_usd(self) -> float:
        """Every proposal's cost, recorded when it returned: redone iterations count each time they spent."""
        row = self._one(
            "SELECT COALESCE(SUM(json_extract(data, '$.cost_usd')), 0) FROM events WHERE kind='proposal'")
        return float(row[0])

    # -- task results (the benchmark cache) ------------------------------------------------------------
    def samples(self, code_hash: str, task_ids: list[str],
                purposes: tuple[str, ...] | None = None) -> dict[str, list[StoredResult]]:
        """Every stored sample of `code_hash` on `task_ids` (drawn for one of `purposes`), in draw order."""
        out: dict[str, list[StoredResult]] = {}
        only = f" AND purpose IN ({', '.join('?' * len(purposes))})" if purposes else ""
        for chunk in range(0, len(task_ids), 500):
            ids = task_ids[chunk : chunk + 500]
            rows = self._all(
                f"SELECT task_id, split, reward, error_class, error, duration_s, cost_usd, draw, purpose FROM results "
                f"WHERE code_hash=? AND task_id IN ({', '.join('?' * len(ids))}){only} ORDER BY task_id, draw",
                [code_hash, *ids, *(purposes or ())],
            )
            for r in rows:
                out.setdefault(r["task_id"], []).append(StoredResult(**dict(r)))
        return out

    def cached_results(self, code_hash: str, task_ids: list[str]) -> dict[str, StoredResult]:
        """The first sample of each task: what a deterministic benchmark's cache answers."""
        return {t: s[0] for t, s in self.samples(code_hash, task_ids).items()}

    def fresh_mean(self, code_hash: str, split: str = "val") -> float | None:
        """The mean over tasks of a version's draws made after it was chosen: its score without the luck that
        chose it (None before any such draw)."""
        rows = self._all(
            f"SELECT task_id, AVG(reward) FROM results WHERE code_hash=? AND split=? AND reward IS NOT NULL "
            f"AND purpose IN ({', '.join('?' * len(FRESH))}) GROUP BY task_id", (code_hash, split, *FRESH))
        return sum(r[1] for r in rows) / len(rows) if rows else None

    def add_samples(self, code_hash: str, results: list[StoredResult], purpose: str = "") -> list[StoredResult]:
        """Store one new draw of each result's task; return them with their draw numbers."""
        now, out = time.time(), []
        with self.tx() as c:
            for r in results:
                row = c.execute("SELECT COALESCE(MAX(draw) + 1, 0) FROM results WHERE code_hash=? AND task_id=?",
                                (code_hash, r.task_id)).fetchone()
                r.draw, r.purpose = int(row[0]), purpose
                c.execute(
                    "INSERT INTO results (code_hash, task_id, draw, split, reward, error_class, error, duration_s, "
                    "cost_usd, created_at, purpose) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (code_hash, r.task_id, r.draw, r.split, r.reward, r.error_class, r.error, r.duration_s,
                     r.cost_usd, now, purpose))
                out.append(r)
        return out

    def forget(self, code_hash: str) -> None:
        """Drop every sample of `code_hash`: results no one may reuse (a benchmark that could not judge them)."""
        self._exec("DELETE FROM results WHERE code_hash=?", (code_hash,))

    # -- events and key/values -------------------------------------------------------------------------
    def event(self, kind: str, message: str, iteration: int | None = None, **data: Any) -> None:
        self._exec(
            "INSERT INTO events (ts, iteration, kind, message, data) VALUES (?, ?, ?, ?, ?)",
            (time.time(), iteration, kind, message, json.dumps(data, default=str)),
        )

    def events(self, kind: str | None = None) -> list[sqlite3.Row]:
        if kind:
            return self._all("SELECT * FROM events WHERE kind=? ORDER BY id", (kind,))
        return self._all("SELECT * FROM events ORDER BY id")

    def get(self, key: str, default: str | None = None) -> str | None:
        row = self._one("SELECT value FROM kv WHERE key=?", (key,))
        return row[0] if row else default

    def put(self, key: str, value: str) -> None:
        self._exec("INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)", (key, value))

    # -- results.tsv -----------------------------------------------------------------------------------
    def write_tsv(self, path: Path) -> None:
        lines = ["\t".join(TSV_COLUMNS)]
        for r in sorted(self.iterations(), key=lambda r: (r.decided_at, r.n)):  # in the order they were decided
            cells = [
                str(r.n),
                "" if r.val_score is None else f"{r.val_score:.4f}",
                r.commit_sha[:12],
                str(r.evals_passed),
                str(r.evals_total),
                time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(r.decided_at)),
                r.decision,
                r.staged_reason(),
                r.backend,
                _cost_cell(r),
                f"{r.duration_s:.1f}",
            ]
            lines.append("\t".join(c.replace("\t", " ").replace("\n", " ") for c in cells))
        atomic_write(path, "\n".join(lines) + "\n")


def _record(row: sqlite3.Row) -> IterationRecord:
    data = dict(row)
    return IterationRecord(**{**data, "decision": Decision(data["decision"]), "stage": Stage(data["stage"])})


def _cost_cell(r: IterationRecord) -> str:
    if r.cost_usd is not None:
        return f"{r.cost_usd:.4f}"
    return "" if r.decision == "baseline" else "unknown"
