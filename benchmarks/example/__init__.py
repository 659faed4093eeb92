"""The bundled offline example: a customer-support agent, its benchmark, and a queue of patches.

`make demo` copies `target/` into a scratch git repo and runs the loop on it with the `replay` backend
(`patches/`) and the `command` runner (`bench/eval.py`) on the split in `split.json`. `expected.json`
says what each iteration should decide; `patches/README.md` explains why.
"""

from pathlib import Path

HERE = Path(__file__).resolve().parent
TARGET_DIR = HERE / "target"          # the agent repo's files (no .git)
EVAL_SCRIPT = HERE / "bench" / "eval.py"
TASKS_FILE = HERE / "bench" / "tasks.json"
PATCHES_DIR = HERE / "patches"
SPLIT_FILE = HERE / "split.json"
EXPECTED_FILE = HERE / "expected.json"
EDITABLE = ["support_agent/**"]
