"""The anthropic and openai backends: the real SDKs against the scripted server, editing a real git worktree."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agents.anthropic_api import AnthropicAgent
from agents.fallback import FallbackChain, build_agent
from agents.openai_api import OpenAIAgent
from agents.scripted_server import ScriptedServer
from orchestrator.core.config import BackendConfig, BackendSection
from orchestrator.core.contracts import ProposalRequest, ProposalStatus
from tests.toy import git, greet_repo

SECRET = "sk-test-secret-0123456789"
PROMPT = "Make the agent greet politely. Failure digest: task t1 says 'rude greeting'."
PRICES = {"input_per_mtok": 3.0, "output_per_mtok": 15.0, "cache_read_per_mtok": 0.3, "cache_write_per_mtok": 3.75}
USAGE = {"input_tokens": 1000, "output_tokens": 200, "cache_read_tokens": 4000, "cache_write_tokens": 500}
STEP_COST = (1000 * 3.0 + 200 * 15.0 + 4000 * 0.3 + 500 * 3.75) / 1e6
FLAVOURS = [("anthropic", None), ("openai", "responses"), ("openai", "chat")]
FLAVOUR_IDS = ["anthropic", "openai-responses", "openai-chat"]

EDITS = [
    {"text": "Looking first.", "tool_calls": [
        {"name": "str_replace_based_edit_tool", "input": {"command": "view", "path": "agent/greet.py"}}]},
    {"tool_calls": [
        {"name": "str_replace_based_edit_tool",
         "input": {"command": "create", "path": "agent/polite.py", "file_text": "WORD = 'please'\n"}},
        {"name": "str_replace_based_edit_tool",
         "input": {"command": "str_replace", "path": "agent/greet.py", "old_str": "'hey'", "new_str": "'hello'"}}]},
    {"tool_calls": [{"name": "bash", "input": {"command": "python -c 'import agent.greet as g; print(g.greet())' "
                                                          "> agent/out.txt && cat agent/out.txt"}}]},
    {"text": "HYPOTHESIS: the greeting was rude.\nCHANGE: greet with hello."},
]


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return greet_repo(tmp_path / "worktree", {"README.md": "target\n"})


def make(kind: str, api: str | None, srv: ScriptedServer | None, *, model: str = "", env: dict | None = None,
         **options) -> AnthropicAgent | OpenAIAgent:
    opts = {"retry_max_wait_s": 2.0, **options}
    if srv is not None:
        opts["base_url"] = srv.base_url if kind == "anthropic" else srv.openai_base_url
    if api:
        opts["api"] = api
    keys = {"ANTHROPIC_API_KEY": SECRET, "OPENAI_API_KEY": SECRET} if env is None else env
    cfg = BackendConfig(kind=kind, model=model, options=opts, env=keys)
    return (AnthropicAgent if kind == "anthropic" else OpenAIAgent)(cfg, Path("."))


def request(repo: Path, *, timeout_s: float = 60, max_cost_usd: float = 5.0, prompt: str = PROMPT) -> ProposalRequest:
    return ProposalRequest(worktree=repo, prompt=prompt, editable=["agent/**"], timeout_s=timeout_s,
                           max_cost_usd=max_cost_usd, transcript_path=repo.parent / "transcript.jsonl")


def status(repo: Path) -> set[str]:
    return set(git(repo, "status", "--porcelain", "--untracked-files=all").splitlines())


def events(req: ProposalRequest) -> list[dict]:
    return [json.loads(line) for line in req.transcript_path.read_text().splitlines()]


def prompt_of(rec: dict) -> str:
    return json.dumps(rec["body"].get("messages") or rec["body"].get("input"))


@pytest.mark.parametrize(("kind", "api"), FLAVOURS, ids=FLAVOUR_IDS)
@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
def test_scripted_tool_calls_edit_the_worktree(repo: Path, kind: str, api: str | None, stream: bool) -> None:
    req = request(repo, prompt=PROMPT + f" (key for the record: {SECRET})")
    with ScriptedServer(EDITS, usage=USAGE) as srv:
        proposal = make(kind, api, srv, stream=stream, prices=PRICES).propose(req)
        sent = srv.completions()
    assert proposal.status is ProposalStatus.OK, proposal.error
    assert (repo / "agent" / "polite.py").read_text() == "WORD = 'please'\n"
    assert "'hello'" in (repo / "agent" / "greet.py").read_text()
    assert (repo / "agent" / "out.txt").read_text() == "hello\n"      # bash ran in the worktree
    assert proposal.summary == "HYPOTHESIS: the greeting was rude.\nCHANGE: greet with hello."
    assert proposal.usage.output_tokens == 4 * 200 and proposal.usage.cache_read_tokens == 4 * 4000
    # OpenAI reports no cache writes: what Anthropic calls a cache write is plain input there.
    assert (proposal.usage.input_tokens, proposal.usage.cache_write_tokens) == \
        ((4 * 1000, 4 * 500) if kind == "anthropic" else (4 * 1500, 0))
    expected = 4 * STEP_COST if kind == "anthropic" else 4 * (STEP_COST - 500 * 3.75e-6 + 500 * 3.0e-6)
    assert proposal.cost_usd == pytest.approx(expected)
    assert (proposal.backend, proposal.transcript) == (kind, req.transcript_path)
    assert len(sent) == 4 and all(r["body"].get("stream", False) is stream for r in sent)
    assert "rude greeting" in prompt_of(sent[0])
    # The second request carries the first tool result: the file's numbered lines.
    assert "return 'hey'" in prompt_of(sent[1]) and "hello" in prompt_of(sent[3])
    assert {t["name"] if "name" in t else t["function"]["name"] for t in sent[0]["body"]["tools"]} == \
        {"bash", "str_replace_based_edit_tool"}
    log = req.transcript_path.read_text()
    assert SECRET not in log and "[REDACTED]" in log
    kinds = [e["event"] for e in events(req)]
    assert kinds[0] == "start" and kinds[-1] == "end" and kinds.count("response") == 4 and kinds.count("tool") == 4
    assert {" M agent/greet.py", "?? agent/out.txt", "?? agent/polite.py"} <= status(repo)


def test_anthropic_caches_the_stable_prefix_and_the_newest_turn(repo: Path) -> None:
    with ScriptedServer(EDITS) as srv:
        make("anthropic", None, srv).propose(request(repo))
        bodies = [r["body"] for r in srv.completions()]
    for body in bodies:
        assert body["system"][-1]["cache_control"] == {"type": "ephemeral"}
        assert body["tools"][-1]["cache_control"] == {"type": "ephemeral"}
        marks = [b for m in body["messages"] for b in m["content"] if "cache_control" in b]
        assert marks == [body["messages"][-1]["content"][-1]]  # one rolling breakpoint, on the newest turn
    assert bodies[0]["system"] == bodies[-1]["system"] and bodies[0]["tools"] == bodies[-1]["tools"]


def test_table_price_for_a_known_model_and_none_for_an_unknown(repo: Path) -> None:
    with ScriptedServer([{"text": "done"}] * 2, usage={"input_tokens": 1000, "output_tokens": 1000}) as srv:
        known = make("anthropic", None, srv, model="claude-sonnet-4-6").propose(request(repo))
        unknown = make("openai", "chat", srv, model="my-local-model").propose(request(repo, max_cost_usd=1e-9))
    assert known.cost_usd == pytest.approx(1000 * 3e-6 + 1000 * 15e-6) and known.model == "claude-sonnet-4-6"
    # Unknown stays None, never 0, and a cap it cannot measure does not stop the work.
    assert unknown.status is ProposalStatus.OK and unknown.cost_usd is None and unknown.usage.output_tokens == 1000


# ------------------------------------------------------------------ faults


@pytest.mark.parametrize(("kind", "api"), FLAVOURS, ids=FLAVOUR_IDS)
@pytest.mark.parametrize("fault", [{"fault": "429", "retry_after": 1}, {"fault": "500"}, {"fault": "overloaded"},
                                   {"fault": "cut", **EDITS[1]}], ids=["429", "500", "overloaded", "cut"])
def test_transient_fault_is_retried_then_the_work_completes(repo: Path, kind: str, api: str | None,
                                                            fault: dict) -> None:
    req = request(repo)
    with ScriptedServer([EDITS[0], fault, *EDITS[1:]]) as srv:
        proposal = make(kind, api, srv).propose(req)
        sent = srv.completions()
    assert proposal.status is ProposalStatus.OK, proposal.error
    assert len(sent) == 5 and prompt_of(sent[1]) == prompt_of(sent[2])  # the same request, sent again
    assert (repo / "agent" / "polite.py").exists() and "'hello'" in (repo / "agent" / "greet.py").read_text()
    retries = [e for e in events(req) if e["event"] == "retry"]
    assert len(retries) == 1
    if fault["fault"] == "429":
        assert retries[0]["error_class"] == "rate_limit" and retries[0]["sleep_s"] == 1.0  # the Retry-After


@pytest.mark.parametrize(("kind", "api"), FLAVOURS, ids=FLAVOUR_IDS)
@pytest.mark.parametrize(("fault", "error_class"), [("401", "auth"), ("context", "context_window"),
                                                    ("malformed", "bad_output")])
def test_permanent_fault_ends_with_an_error_and_no_retry(repo: Path, kind: str, api: str | None, fault: str,
                                                         error_class: str) -> None:
    with ScriptedServer([EDITS[1], {"fault": fault, **EDITS[3]}, EDITS[3]]) as srv:
        proposal = make(kind, api, srv, prices=PRICES).propose(request(repo))
        assert len(srv.completions()) == 2
    assert proposal.status is ProposalStatus.ERROR and proposal.error_class == error_class
    # The first turn was paid for, and the proposal says so.
    assert proposal.usage.output_tokens == 20 and proposal.cost_usd == pytest.approx((100 * 3 + 20 * 15) / 1e6)
    # The edits of the first turn stay, in a worktree git still reads.
    assert status(repo) == {" M agent/greet.py", "?? agent/polite.py"}


def test_backend_that_stays_down_returns_an_error_proposal(repo: Path) -> None:
    with ScriptedServer([{"fault": "500"}] * 3) as srv:
        proposal = make("openai", "responses", srv, retries=3, retry_max_wait_s=0.05).propose(request(repo))
        assert len(srv.completions()) == 3
    assert proposal.status is ProposalStatus.ERROR and proposal.error_class == "overloaded"
    assert "500" in proposal.error


@pytest.mark.parametrize(("kind", "api"), FLAVOURS, ids=FLAVOUR_IDS)
def test_hang_ends_at_the_wall_clock(repo: Path, kind: str, api: str | None) -> None:
    with ScriptedServer([EDITS[1], {"fault": "hang"}]) as srv:
        # 5 s: the first turn's edits land well inside it on a loaded machine; the second request hangs.
        proposal = make(kind, api, srv).propose(request(repo, timeout_s=5))
    assert proposal.status is ProposalStatus.TIMEOUT and proposal.error_class == "timeout"
    assert status(repo) == {" M agent/greet.py", "?? agent/polite.py"}


def test_a_slow_tool_is_stopped_by_the_wall_clock(repo: Path) -> None:
    steps = [{"tool_calls": [{"name": "bash", "input": {"command": "sleep 60"}}]}, {"text": "never asked"}]
    with ScriptedServer(steps) as srv:
        proposal = make("anthropic", None, srv).propose(request(repo, timeout_s=2))
        assert len(srv.completions()) == 1
    assert proposal.status is ProposalStatus.TIMEOUT


def test_turn_limit_ends_ok_with_the_edits_so_far(repo: Path) -> None:
    with ScriptedServer(EDITS) as srv:
        proposal = make("openai", "chat", srv, max_turns=2).propose(request(repo))
        assert len(srv.completions()) == 2
    assert proposal.status is ProposalStatus.OK and "turn limit (2 turns)" in proposal.error
    assert proposal.summary == "Looking first."
    assert (repo / "agent" / "polite.py").exists()


@pytest.mark.parametrize(("kind", "api"), FLAVOURS, ids=FLAVOUR_IDS)
def test_cost_cap_ends_over_budget(repo: Path, kind: str, api: str | None) -> None:
    with ScriptedServer(EDITS, usage=USAGE) as srv:
        proposal = make(kind, api, srv, prices=PRICES).propose(request(repo, max_cost_usd=2.5 * STEP_COST))
        assert len(srv.completions()) == 3
    assert proposal.status is ProposalStatus.OVER_BUDGET and proposal.error_class == "over_budget"
    assert proposal.cost_usd >= 2.5 * STEP_COST * 0.9


@pytest.mark.parametrize(("kind", "api"), FLAVOURS, ids=FLAVOUR_IDS)
def test_refusal_is_an_error(repo: Path, kind: str, api: str | None) -> None:
    with ScriptedServer([{"refusal": "I will not do that."}]) as srv:
        proposal = make(kind, api, srv).propose(request(repo))
    assert proposal.status is ProposalStatus.ERROR and proposal.error_class == "refusal"
    assert "I will not do that." in proposal.summary


def test_path_escapes_are_refused_and_the_model_is_told(repo: Path) -> None:
    outside = repo.parent / "escaped.txt"
    steps = [{"tool_calls": [
        {"name": "str_replace_based_edit_tool", "input": {"command": "create", "path": "../escaped.txt", "file_text": "x"}},
        {"name": "str_replace_based_edit_tool", "input": {"command": "create", "path": str(outside), "file_text": "x"}}]},
        {"text": "gave up"}]
    with ScriptedServer(steps) as srv:
        proposal = make("openai", "responses", srv).propose(request(repo))
        second = srv.completions()[1]["body"]["input"]
    assert proposal.status is ProposalStatus.OK and not outside.exists()
    outputs = [i["output"] for i in second if i.get("type") == "function_call_output"]
    assert len(outputs) == 2 and all("outside the repository" in o for o in outputs)


def test_missing_key_is_an_auth_error_without_a_request(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_BASE_URL", raising=False)
    proposal = make("anthropic", None, None, env={}).propose(request(repo))
    assert proposal.status is ProposalStatus.ERROR and proposal.error_class == "auth"
    assert "ANTHROPIC_API_KEY" in proposal.error


# ------------------------------------------------------------------ fallback


def _section(primary: ScriptedServer, secondary: ScriptedServer, **primary_options) -> BackendSection:
    return BackendSection(
        kind="anthropic", env={"ANTHROPIC_API_KEY": SECRET},
        options={"base_url": primary.base_url, "retries": 2, "retry_max_wait_s": 0.05, **primary_options},
        fallback=[BackendConfig(kind="openai", env={"OPENAI_API_KEY": SECRET},
                                options={"base_url": secondary.openai_base_url, "api": "chat", "prices": PRICES})])


def test_fallback_takes_over_on_a_clean_worktree_when_the_primary_is_down(repo: Path) -> None:
    context = repo / ".autoharness" / "traces"
    context.mkdir(parents=True)
    (context / "t1.json").write_text('{"task": "t1"}')   # put there by the orchestrator: must survive
    partial = [{"tool_calls": [
        {"name": "str_replace_based_edit_tool", "input": {"command": "create", "path": "agent/half.py", "file_text": "x"}},
        {"name": "str_replace_based_edit_tool",
         "input": {"command": "str_replace", "path": "README.md", "old_str": "target", "new_str": "broken"}},
        {"name": "bash", "input": {"command": "mkdir -p build && touch build/junk && git add agent/half.py"}}]},
        {"fault": "500"}, {"fault": "500"}]
    req = request(repo)
    with ScriptedServer(partial, usage=USAGE) as down, ScriptedServer(EDITS, usage=USAGE) as up:
        agent = build_agent(_section(down, up, prices=PRICES), Path("."))
        assert isinstance(agent, FallbackChain)
        proposal = agent.propose(req)
        assert len(down.completions()) == 3 and len(up.completions()) == 4
        # The fallback saw the original files, not the primary's half-done edit.
        assert "half.py" not in json.dumps(up.completions()[0]["body"])
    assert proposal.status is ProposalStatus.OK and proposal.backend == "openai"
    assert not (repo / "agent" / "half.py").exists() and not (repo / "build").exists()
    assert (repo / "README.md").read_text() == "target\n"
    assert (context / "t1.json").read_text() == '{"task": "t1"}'
    assert (repo / "agent" / "polite.py").exists()
    # Both attempts were paid for: 1 turn of the primary, 4 of the fallback.
    assert proposal.usage.output_tokens == 5 * 200
    assert proposal.cost_usd == pytest.approx(STEP_COST + 4 * (STEP_COST - 500 * 3.75e-6 + 500 * 3.0e-6))
    notes = [e for e in events(req) if e["event"] == "fallback"]
    assert notes and notes[0]["from"] == "anthropic" and notes[0]["to"] == "openai"
    assert notes[0]["error_class"] == "overloaded"


def test_fallback_is_not_used_for_a_bad_request_or_a_spent_wall_clock(repo: Path) -> None:
    for primary, expected in (([{"fault": "context"}], "context_window"), ([{"fault": "hang"}], "timeout")):
        with ScriptedServer(primary) as down, ScriptedServer(EDITS) as up:
            # 5 s: the context error comes back well inside it (so it is not a timeout); the hang spends it.
            proposal = build_agent(_section(down, up), Path(".")).propose(request(repo, timeout_s=5))
            assert up.completions() == []
        assert proposal.backend == "anthropic" and proposal.error_class == expected


def test_fallback_after_an_auth_failure(repo: Path) -> None:
    with ScriptedServer([{"fault": "401"}]) as down, ScriptedServer(EDITS) as up:
        proposal = build_agent(_section(down, up), Path(".")).propose(request(repo))
        assert len(down.completions()) == 1
    assert proposal.status is ProposalStatus.OK and proposal.backend == "openai"


# ------------------------------------------------------------------ doctor


def test_check_reports_sdk_key_endpoint_and_price(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with ScriptedServer([]) as srv, ScriptedServer([]) as other:
        good = {c.name: c for c in make("anthropic", None, srv, model="claude-sonnet-4-6").check()}
        assert all(c.ok for c in good.values()) and good["anthropic: anthropic SDK"].detail.startswith("anthropic ")
        assert "answered HTTP 200" in good["anthropic: endpoint"].detail
        local = {c.name: c for c in make("openai", "chat", srv, env={}, model="my-local-model").check()}
        assert local["openai: API key"].ok and not local["openai: API key"].fatal
        assert not local["openai: price"].ok and not local["openai: price"].fatal
        chain = build_agent(_section(srv, other), Path(".")).check()
        assert any(c.name.startswith("fallback 1: openai") and not c.fatal for c in chain)
        dead_port = other.port
    gone = {c.name: c for c in make("anthropic", None, None, base_url=f"http://127.0.0.1:{dead_port}").check()}
    assert not gone["anthropic: endpoint"].ok and gone["anthropic: endpoint"].fatal
    nokey = {c.name: c for c in make("openai", None, None, env={}).check()}
    assert not nokey["openai: API key"].ok and nokey["openai: API key"].fatal
