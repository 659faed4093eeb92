"""The one scrubber: secret values (by name and by value) and held-out ids, in texts and in files."""

from __future__ import annotations

import json

import pytest

from orchestrator.core.config import BackendConfig, BackendSection
from orchestrator.core.scrub import HELD_OUT, REDACTED, Scrubber, id_pattern, ids_pattern, secret_values

GATEWAY = "gw-9f8e7d6c5b4a"   # a [backend.env] value under a name that does not say "secret"
FALLBACK = "fb-0a1b2c3d4e5f"
KEY = "sk-ant-0123456789abcdef"


@pytest.fixture
def backend() -> BackendSection:
    return BackendSection(kind="replay", env={"GATEWAY_AUTH": GATEWAY, "DEBUG": "1", "BRANCH": "main"},
                          fallback=[BackendConfig(kind="openai", env={"PROXY_CRED": FALLBACK})])


@pytest.fixture(autouse=True)
def environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    monkeypatch.setenv("HOME_DIRECTORY_NAME", "not-a-secret-by-name")


def test_backend_env_values_are_hidden_whatever_their_names(backend: BackendSection) -> None:
    scrub = Scrubber.build([], backend)
    text = f"used {GATEWAY} then {FALLBACK} with {KEY}; DEBUG=1 on main"
    assert scrub(text) == f"used {REDACTED} then {REDACTED} with {REDACTED}; DEBUG=1 on main"
    assert "not-a-secret-by-name" not in scrub.secrets  # the environment goes by name only


def test_values_too_short_to_mean_anything_are_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "not-set")  # the placeholder a local endpoint gets: 7 characters
    assert secret_values({"X_TOKEN": "abcdefg"}, ["1", "true", "main"]) == []
    assert "not-set" not in secret_values()
    assert secret_values({"X_TOKEN": "abcdefgh"}) == ["abcdefgh"]


def test_the_usual_key_variables_are_secrets_by_name() -> None:
    env = {name: f"{name.lower()}-value" for name in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "CODEX_API_KEY")}
    assert sorted(secret_values(env)) == sorted(env.values())


def test_a_secret_inside_a_json_string_is_hidden_too() -> None:
    odd = 'pa"ss\\wörd-123'
    line = json.dumps({"event": "tool", "result": f"value {odd}"})
    assert odd not in json.loads(Scrubber(tuple(secret_values({}, [odd])))(line))["result"]
    assert json.loads(Scrubber(tuple(secret_values({}, [odd])))(line))["result"] == f"value {REDACTED}"


def test_a_secret_that_contains_another_goes_whole() -> None:
    scrub = Scrubber(tuple(secret_values({}, ["abcdefgh", "abcdefgh-ijkl"])))
    assert scrub("x abcdefgh-ijkl y") == f"x {REDACTED} y"


def test_held_out_ids_by_the_guard_rule() -> None:
    scrub = Scrubber(held_out=("va-beta-1", "te-gamma-2", "12"))
    assert scrub("fixed va-beta-1 and te-gamma-2.") == f"fixed {HELD_OUT} and {HELD_OUT}."
    assert scrub("va-beta-12 tr-va-beta-1 x.va-beta-1") == "va-beta-12 tr-va-beta-1 x.va-beta-1"  # other tokens
    assert scrub("retry = 12; if task == '12':") == f"retry = 12; if task == {HELD_OUT}:"  # numbers only quoted


def test_one_pattern_for_many_ids_agrees_with_the_single_id_rule() -> None:
    ids = ["va-beta-1", "va-beta-12", "7", "airline_3"]
    text = "va-beta-12 va-beta-1 '7' 7 airline_3 airline_33"
    assert {m.group() for m in ids_pattern(ids).finditer(text)} == \
           {m.group() for t in ids for m in id_pattern(t).finditer(text)}
    assert ids_pattern([]).search(text) is None


def test_a_file_is_rewritten_only_when_it_holds_something_to_hide(tmp_path, backend: BackendSection) -> None:
    scrub = Scrubber.build(["va-beta-1"], backend)
    dirty, clean = tmp_path / "transcript.jsonl", tmp_path / "diff.patch"
    dirty.write_text(json.dumps({"text": f"{GATEWAY} answers va-beta-1"}) + "\n")
    clean.write_bytes(b"+KNOWN = ['alpha']\n\xff\n")
    before = clean.stat().st_mtime_ns
    scrub.file(dirty)
    scrub.file(clean)
    scrub.file(tmp_path / "missing.patch")
    assert json.loads(dirty.read_text()) == {"text": f"{REDACTED} answers {HELD_OUT}"}
    assert clean.read_bytes() == b"+KNOWN = ['alpha']\n\xff\n" and clean.stat().st_mtime_ns == before


def test_a_secret_cut_at_either_edge_is_hidden_too():
    from orchestrator.core.scrub import REDACTED, redact
    key = "sk-live-0123456789abcdefghij"
    assert redact(f"the model refused: {key}"[:30], [key]) == "the model refused: " + REDACTED
    assert redact(f"{key} was printed"[-20:], [key]) == REDACTED + " was printed"
    assert redact("ends with sk-l", [key]) == "ends with sk-l"  # a few characters say nothing
