"""Failure signatures and the digest's words: crashes grouped by exception type and place, from real tracebacks
(Python 3.11's output, paths shortened), and counts with the right plural."""

from __future__ import annotations

from orchestrator.analyze import digest, group_failures, headline, signature
from orchestrator.store import StoredResult

# A KeyError raised in the agent's code, with a log line before the traceback.
KEY_ERROR = """\
INFO loading 8 tasks
Traceback (most recent call last):
  File "/home/u/bench/eval.py", line 5, in <module>
    orders.lookup_order("B7")
  File "/home/u/agent/orders.py", line 5, in lookup_order
    return ORDERS[order_id]
           ~~~~~~^^^^^^^^^^
KeyError: 'B7'
"""

# The same missing key, handled by raising the agent's own exception: the chain ends in OrderMissing.
CHAINED = """\
Traceback (most recent call last):
  File "/home/u/agent/orders.py", line 14, in find
    return lookup_order(order_id)
           ^^^^^^^^^^^^^^^^^^^^^^
  File "/home/u/agent/orders.py", line 5, in lookup_order
    return ORDERS[order_id]
           ~~~~~~^^^^^^^^^^
KeyError: 'B7'

During handling of the above exception, another exception occurred:

Traceback (most recent call last):
  File "/home/u/bench/eval.py", line 4, in <module>
    orders.find("B7")
  File "/home/u/agent/orders.py", line 16, in find
    raise OrderMissing(order_id)
orders.OrderMissing: B7
"""

# A syntax error in the agent's file, met while the benchmark imports it: placed in that file, not in importlib.
SYNTAX_ERROR = """\
Traceback (most recent call last):
  File "/home/u/bench/eval.py", line 4, in <module>
    spec.loader.exec_module(mod)
  File "<frozen importlib._bootstrap_external>", line 936, in exec_module
  File "<frozen importlib._bootstrap_external>", line 1074, in get_code
  File "<frozen importlib._bootstrap_external>", line 1004, in source_to_code
  File "<frozen importlib._bootstrap>", line 241, in _call_with_frames_removed
  File "/home/u/agent/broken.py", line 2
    return x +
              ^
SyntaxError: invalid syntax
"""

# Raised inside the standard library: placed in the caller's code, the frame worth reading.
IN_STDLIB = """\
Traceback (most recent call last):
  File "/home/u/bench/eval.py", line 5, in <module>
    parse_reply("not json")
  File "/home/u/agent/reply.py", line 3, in parse_reply
    return json.loads(text)
           ^^^^^^^^^^^^^^^^
  File "/usr/lib/python3.11/json/__init__.py", line 346, in loads
    return _default_decoder.decode(s)
           ^^^^^^^^^^^^^^^^^^^^^^^^^^
  File "/usr/lib/python3.11/json/decoder.py", line 355, in raw_decode
    raise JSONDecodeError("Expecting value", s, err.value) from None
json.decoder.JSONDecodeError: Expecting value: line 1 column 1 (char 0)
"""

# A frozen frame last (os.environ), then noise after the exception line.
NOISY = """\
2026-11-30 07:01:02 worker started
2026-11-30 07:01:03 task tr-7 begins
Traceback (most recent call last):
  File "/home/u/bench/eval.py", line 4, in <module>
    main()
  File "/home/u/bench/eval.py", line 3, in main
    agent = os.environ["AGENT_HOME"]
            ~~~~~~~~~~^^^^^^^^^^^^^^
  File "<frozen os>", line 679, in __getitem__
KeyError: 'AGENT_HOME'
2026-11-30 07:01:03 worker exiting with 1
"""


def result(error: str, error_class: str = "crash", task_id: str = "t1", reward: float | None = 0.0) -> StoredResult:
    return StoredResult(task_id, "train", reward, error_class, error, 1.0, None)


def test_a_crash_is_told_by_its_exception_type_and_the_frame_that_raised_it():
    assert signature(result("exit 1: " + KEY_ERROR)) == "[crash] KeyError in orders.py:lookup_order"
    assert signature(result(KEY_ERROR, "failed")) == "[failed] KeyError in orders.py:lookup_order"


def test_a_chained_traceback_is_told_by_its_last_exception():
    assert signature(result("exit 1: " + CHAINED)) == "[crash] orders.OrderMissing in orders.py:find"


def test_a_syntax_error_is_placed_in_the_file_that_has_it():
    assert signature(result("exit 1: " + SYNTAX_ERROR)) == "[crash] SyntaxError in broken.py"


def test_python_s_own_frames_give_way_to_the_caller():
    assert signature(result(IN_STDLIB)) == "[crash] json.decoder.JSONDecodeError in reply.py:parse_reply"
    assert signature(result("exit 1: " + NOISY)) == "[crash] KeyError in eval.py:main"


def test_crashes_of_different_kinds_or_places_land_in_different_groups():
    results = {
        "t1": result(KEY_ERROR, task_id="t1"),
        "t2": result(KEY_ERROR.replace("'B7'", "'C9'"), task_id="t2"),   # same crash, another value
        "t3": result(CHAINED, task_id="t3"),
        "t4": result(SYNTAX_ERROR, task_id="t4"),
    }
    groups = group_failures(results, pass_reward=1.0)
    assert [(g.signature, [t.task_id for t in g.tasks]) for g in groups] == [
        ("[crash] KeyError in orders.py:lookup_order", ["t1", "t2"]),
        ("[crash] SyntaxError in broken.py", ["t4"]),
        ("[crash] orders.OrderMissing in orders.py:find", ["t3"]),
    ]


def test_an_error_that_is_not_a_traceback_keeps_its_first_meaningful_line():
    assert signature(result("\n---\nagent said 'refund 42' for order B7\nmore detail", "failed")) == \
        "[failed] agent said … for order N"
    assert signature(result("exit 3: segmentation fault (core dumped)")) == "[crash] exit N: segmentation fault (core dumped)"
    assert signature(result("")) == "[crash] no error text"
    # Frames with no exception line after them (the tail was cut) are not a crash to place.
    cut = KEY_ERROR.rsplit("KeyError", 1)[0]
    assert signature(result(cut)) == "[crash] INFO loading N tasks"


def test_headline_tells_a_crash_in_one_line():
    assert headline("exit 1: " + KEY_ERROR) == "KeyError: 'B7' (in orders.py:lookup_order)"
    assert headline("reward \"yes\" is not a number in [0, 1]") == "reward \"yes\" is not a number in [0, 1]"


def test_the_digest_counts_in_words():
    one = digest({"t1": result("agent gave up")}, 1.0, [], ".autoharness")
    assert one.splitlines()[0] == "Train: 0/1 task passed, 1 failed, in 1 group."
    assert "### Group 1: 1 task — [crash] agent gave up" in one
    two = {f"t{i}": result(f"error kind {'ab'[i % 2]}x", task_id=f"t{i}") for i in range(3)}
    two["ok"] = result("", "", task_id="ok", reward=1.0)
    text = digest(two, 1.0, [], ".autoharness")
    assert text.splitlines()[0] == "Train: 1/4 tasks passed, 3 failed, in 2 groups (largest first)."
    assert "### Group 1: 2 tasks — [crash] error kind ax" in text
    assert digest({"ok": two["ok"]}, 1.0, [], ".autoharness") == "Train: 1/1 task passed."


def test_a_long_error_keeps_its_end_in_the_digest():
    long = "exit 1: " + "x" * 2000 + "\n" + KEY_ERROR
    text = digest({"t1": result(long)}, 1.0, [], ".autoharness")
    assert "KeyError: 'B7'" in text and "…[cut]…" in text
