"""The project of the parallel-candidate tests: an agent with one file per skill, a stand-in benchmark whose
failing train tasks fall into three groups of different sizes (refund 3, track 2, cancel 1; greet passes and
seeds the suite), one val task of each skill, two test tasks, and a queue of patches for the scripted backend
(tests/slow_replay.py) picked by name from PATCHES.

    toy = make_parallel(tmp_path, ["refund", "track", "guard"], parallel=3, delays={1: 2.0})
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from contextlib import closing
from pathlib import Path

from tests.toy import Toy, init_repo, write_toy

HERE = Path(__file__).resolve().parent
SKILLS = ("refund", "track", "cancel", "greet")
GROUP_SIZES = {"refund": 3, "track": 2, "cancel": 1, "greet": 1}  # train tasks of each skill
TASKS = {f"tr-{s}-{i}": s for s in SKILLS for i in range(1, GROUP_SIZES[s] + 1)}
TASKS |= {f"va-{s}-1": s for s in SKILLS}  # each fix moves val by a quarter
TASKS |= {f"te-{s}-1": s for s in ("refund", "greet")}
SPLIT = {split: [t for t in TASKS if t.startswith(prefix)] for split, prefix in
         (("train", "tr-"), ("val", "va-"), ("test", "te-"))}


def skill(enabled: str = "True") -> str:
    return f"ENABLED = {enabled}\n"


# name -> (files it writes on the base commit, its message). Each fix touches its skill's file only, so fixes
# of different skills replay onto each other cleanly; "refund-other" rewrites the line "refund" rewrites; the
# others add files of their own, so they apply on any best.
PATCHES: dict[str, tuple[dict[str, str], str]] = {
    "refund": ({"agent/refund.py": skill()}, "Answer refund requests"),
    "track": ({"agent/track.py": skill()}, "Switch parcel tracking on"),
    "cancel": ({"agent/cancel.py": skill()}, "Give the agent its cancel tool"),
    "refund-other": ({"agent/refund.py": skill("not False")}, "Answer refund requests, another way"),
    "guard": ({"README.md": "cancel anything\n", "agent/motto.py": "MOTTO = 'cancel anything'\n"},
              "A motto, and the README says it too"),
    "notes": ({"agent/notes.py": "NOTE = 'be kind'\n"}, "A note that changes no score"),
}

# What a task says when its skill is off: distinct first lines with no quotes or digits, so that the analysis
# (orchestrator/analyze.py signature) makes one failure group of each skill.
ERRORS = {
    "refund": "refund request unanswered: no refund policy loaded",
    "track": "parcel lookup failed: tracking is switched off",
    "cancel": "order cancellation refused: cancel tool missing",
    "greet": "greeting skipped: greeter not installed",
}


def make_parallel(root: Path, queue: list[str], *, parallel: int, delays: dict[int, float] | None = None,
                  cost_usd: float = 0.0, max_cost_usd: float = 5.0, extra_loop: str = "") -> Toy:
    """The project under `root`, its queue's patches (0001-<name>.patch, ...) made on the base commit, and
    a config with `loop.parallel` and the scripted backend's delays (iteration -> seconds) and price."""
    waits = "".join(f'"{n}" = {s}\n' for n, s in sorted((delays or {}).items()))
    backend = (f'kind = "tests.slow_replay:SlowReplay"\nmax_cost_usd = {max_cost_usd}\n'
               f'[backend.options]\npatches = "patches"\ncost_usd = {cost_usd}\n[backend.options.delays]\n{waits}')
    toy = write_toy(root, TASKS, SPLIT, backend=backend,
                    extra_config=f"[loop]\nparallel = {parallel}\nmax_iterations = 20\n{extra_loop}")
    # Slots for a whole split at once: a candidate's gate is one round of task runs.
    toy.config.write_text(toy.config.read_text().replace("concurrency = 2\n", "concurrency = 8\n", 1))
    shutil.copyfile(HERE / "eval.py", toy.bench / "eval.py")
    (toy.bench / "errors.json").write_text(json.dumps(ERRORS))
    (toy.target / "agent" / "skills.py").unlink()
    for name in SKILLS:
        (toy.target / "agent" / f"{name}.py").write_text(skill("True" if name == "greet" else "False"))
    init_repo(toy.target)
    for i, name in enumerate(queue, 1):
        edits, message = PATCHES[name]
        toy.add_patch(f"{i:04d}-{name}.patch", edits, message=message)
    return toy


# -- what the tests read back ------------------------------------------------------------------------------

def query(toy: Toy, sql: str, *args: object) -> list[sqlite3.Row]:
    """Rows of the workspace's state.db, read-only (beside a running daemon too)."""
    uri = f"{(toy.workspace / 'state.db').as_uri()}?mode=ro"
    with closing(sqlite3.connect(uri, uri=True, timeout=30)) as conn:
        conn.row_factory = sqlite3.Row
        return conn.execute(sql, args).fetchall()


def events(toy: Toy, *kinds: str) -> list[dict]:
    """The store's events of these kinds, in the order they were written, with their data parsed."""
    marks = ",".join("?" * len(kinds))
    rows = query(toy, f"SELECT id, kind, iteration, message, data FROM events WHERE kind IN ({marks}) ORDER BY id",
                 *kinds)
    return [{**dict(r), "data": json.loads(r["data"] or "{}")} for r in rows]


def decided(toy: Toy) -> dict[int, sqlite3.Row]:
    """The recorded iterations by number, the baseline included."""
    return {r["n"]: r for r in query(toy, "SELECT * FROM iterations ORDER BY n")}


def tip_file(toy: Toy, rel: str) -> str:
    """A file of the best tree: the tip of the branch that receives accepted changes."""
    return toy.git("show", f"autoharness:{rel}")
