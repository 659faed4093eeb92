"""The two worktree-confined tools: edits land inside, escapes are refused with an error result.
(The bash tool runs processes: tests/integration/test_tools_bash.py.)"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agents.tools import BASH, EDIT, Toolbox, anthropic_tools, chat_tools, responses_tools


def edit(box: Toolbox, **args):
    return box.run(EDIT, args)


def test_schemas_name_the_same_two_tools_with_the_same_arguments() -> None:
    a = {t["name"]: t["input_schema"] for t in anthropic_tools()}
    r = {t["name"]: t["parameters"] for t in responses_tools()}
    c = {t["function"]["name"]: t["function"]["parameters"] for t in chat_tools()}
    assert list(a) == [BASH, EDIT] and a == r == c
    assert set(a[EDIT]["properties"]) == {"command", "path", "file_text", "old_str", "new_str", "insert_line"}
    assert a[EDIT]["properties"]["command"]["enum"] == ["view", "create", "str_replace", "insert"]
    assert a[BASH]["required"] == ["command"]


def test_create_view_replace_insert(box: Toolbox) -> None:
    assert not edit(box, command="create", path="agent/new/util.py", file_text="A = 1\nB = 2\n").is_error
    assert (box.root / "agent/new/util.py").read_text() == "A = 1\nB = 2\n"
    view = edit(box, command="view", path="agent/new/util.py")
    assert view.text.splitlines() == ["     1\tA = 1", "     2\tB = 2"]
    assert not edit(box, command="str_replace", path="agent/new/util.py", old_str="B = 2", new_str="B = 3").is_error
    assert not edit(box, command="insert", path="agent/new/util.py", insert_line=1, new_str="# between").is_error
    assert not edit(box, command="insert", path="agent/new/util.py", insert_line=0, new_str="# top\n").is_error
    assert (box.root / "agent/new/util.py").read_text() == "# top\nA = 1\n# between\nB = 3\n"
    listing = edit(box, command="view", path=".").text.splitlines()
    assert "agent/" in listing and "agent/main.py" in listing and not any(".git" in e for e in listing)


def test_editor_mistakes_come_back_as_error_results(box: Toolbox) -> None:
    twice = box.root / "agent" / "twice.py"
    twice.write_text("x = 1\nx = 1\n")
    cases = [
        (dict(command="str_replace", path="agent/twice.py", old_str="x = 1", new_str="y"), "occurs 2 times"),
        (dict(command="str_replace", path="agent/main.py", old_str="absent", new_str="y"), "occurs 0 times"),
        (dict(command="str_replace", path="agent/none.py", old_str="a", new_str="b"), "no such file"),
        (dict(command="insert", path="agent/main.py", insert_line=99, new_str="z"), "insert_line"),
        (dict(command="create", path="agent/x.py"), "file_text"),
        (dict(command="delete", path="agent/main.py"), "unknown command"),
        (dict(command="view"), "path is required"),
    ]
    for args, message in cases:
        result = edit(box, **args)
        assert result.is_error and message in result.text, (args, result.text)
    assert twice.read_text() == "x = 1\nx = 1\n"
    assert box.run("rm_rf", {"path": "."}).is_error
    assert "JSON object" in box.run(EDIT, '{"command": "view", "path": ').text  # arguments that did not parse


@pytest.mark.parametrize("path", ["../outside.txt", "agent/../../outside.txt", "/etc/passwd", "/tmp/outside.txt"])
def test_escaping_paths_are_refused(box: Toolbox, path: str) -> None:
    for args in (dict(command="create", path=path, file_text="pwned"), dict(command="view", path=path)):
        result = edit(box, **args)
        assert result.is_error and "outside the repository" in result.text
    assert not (box.root.parent / "outside.txt").exists()


def test_absolute_path_inside_is_accepted(box: Toolbox) -> None:
    result = edit(box, command="str_replace", path=str(box.root / "agent/main.py"), old_str="1", new_str="2")
    assert not result.is_error
    assert "return 2" in (box.root / "agent/main.py").read_text()


def test_symlinks_that_leave_are_refused_not_followed(box: Toolbox, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("outside\n")
    os.symlink(secret, box.root / "agent" / "link.txt")
    os.symlink(tmp_path, box.root / "agent" / "up")
    for args in (dict(command="view", path="agent/link.txt"),
                 dict(command="create", path="agent/link.txt", file_text="overwritten"),
                 dict(command="str_replace", path="agent/link.txt", old_str="outside", new_str="x"),
                 dict(command="create", path="agent/up/new.txt", file_text="x")):
        result = edit(box, **args)
        assert result.is_error and "symlink" in result.text, args
    assert secret.read_text() == "outside\n"
    assert not (tmp_path / "new.txt").exists()
    # A symlink that stays inside is an ordinary path.
    os.symlink(box.root / "agent" / "main.py", box.root / "agent" / "alias.py")
    assert "return 1" in edit(box, command="view", path="agent/alias.py").text


def test_git_internals_are_off_limits(box: Toolbox) -> None:
    result = edit(box, command="create", path=".git/HEAD", file_text="ref: refs/heads/evil\n")
    assert result.is_error and "git" in result.text
    assert (box.root / ".git" / "HEAD").read_text() == "ref: refs/heads/main\n"
