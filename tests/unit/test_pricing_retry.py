"""Cost from the price table or the config, and the classification and retry of backend failures."""

from __future__ import annotations

import email.utils
import time

import anthropic
import openai
import pytest

from agents.pricing import Prices, cost_usd, openai_usage
from agents.retry import MAX_WAIT_ENV, call_with_retries, classify, retry_after_s
from agents.scripted_server import ScriptedServer
from orchestrator.core.contracts import Usage
from orchestrator.core.errors import (
    AuthFailed,
    BackendTimeout,
    BadOutput,
    BadRequest,
    ConnectionFailed,
    ContextWindowExceeded,
    Overloaded,
    RateLimited,
)

# ------------------------------------------------------------------ pricing


def test_table_prices_a_known_model_with_its_cache_rates() -> None:
    plain = cost_usd(Usage(input_tokens=1000, output_tokens=1000), "claude-sonnet-4-5", provider="anthropic")
    assert plain == pytest.approx(1000 * 3e-6 + 1000 * 15e-6)
    cached = cost_usd(Usage(cache_read_tokens=10_000, cache_write_tokens=10_000), "claude-sonnet-4-5",
                      provider="anthropic")
    assert cached == pytest.approx(10_000 * 0.30e-6 + 10_000 * 3.75e-6)
    # A dated model id and the other provider's hint still find it.
    assert cost_usd(Usage(input_tokens=1000, output_tokens=1000), "claude-sonnet-4-5-20250929", provider="openai") == plain


def test_openai_usage_takes_cached_tokens_out_of_input() -> None:
    usage = openai_usage(input_tokens=10_000, output_tokens=500, cached_tokens=8000)
    assert (usage.input_tokens, usage.cache_read_tokens, usage.output_tokens) == (2000, 8000, 500)
    gpt = cost_usd(usage, "gpt-5", provider="openai")
    assert gpt == pytest.approx(2000 * 1.25e-6 + 8000 * 0.125e-6 + 500 * 10e-6)


def test_unknown_model_is_none_and_an_override_prices_it() -> None:
    usage = Usage(input_tokens=2_000_000, output_tokens=1_000_000, cache_read_tokens=1_000_000, cache_write_tokens=0)
    assert cost_usd(usage, "my-local-llama", provider="openai") is None
    assert cost_usd(usage, "", provider="anthropic") is None
    prices = Prices(input_per_mtok=1.0, output_per_mtok=2.0, cache_read_per_mtok=0.1)
    assert cost_usd(usage, "my-local-llama", prices=prices) == pytest.approx(2.0 + 2.0 + 0.1)
    # Cache rates default to the input rate, and the override wins over the table.
    assert Prices(input_per_mtok=4, output_per_mtok=0).cost(Usage(cache_write_tokens=1_000_000)) == 4.0
    assert cost_usd(Usage(input_tokens=1_000_000), "gpt-5", prices=Prices(input_per_mtok=7, output_per_mtok=0)) == 7.0
    assert cost_usd(Usage(), "claude-sonnet-4-5", provider="anthropic") == 0.0  # nothing used: a known zero


# ------------------------------------------------------------------ classification, through real SDK calls


def _sdk_error(api: str, step: dict, stream: bool = False, timeout: float = 5) -> BaseException:
    with ScriptedServer([step]) as srv:
        try:
            if api == "anthropic":
                client = anthropic.Anthropic(api_key="k", base_url=srv.base_url, max_retries=0, timeout=timeout)
                if stream:
                    with client.messages.stream(model="m", max_tokens=5, messages=[{"role": "user", "content": "x"}]) as s:
                        s.get_final_message()
                else:
                    client.messages.create(model="m", max_tokens=5, messages=[{"role": "user", "content": "x"}])
            else:
                client = openai.OpenAI(api_key="k", base_url=srv.openai_base_url, max_retries=0, timeout=timeout)
                stream_ = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}],
                                                         stream=stream)
                if stream:
                    list(stream_)
        except Exception as exc:
            return exc
    raise AssertionError("the fault did not fail the call")


@pytest.mark.parametrize("api", ["anthropic", "chat"])
@pytest.mark.parametrize(("step", "kind", "transient"), [
    ({"fault": "429", "retry_after": 3}, RateLimited, True),
    ({"fault": "500"}, Overloaded, True),
    ({"fault": "overloaded"}, Overloaded, True),
    ({"fault": "401"}, AuthFailed, False),
    ({"fault": "context"}, ContextWindowExceeded, False),
    ({"fault": "exhausted"}, BadRequest, False),
    ({"fault": "cut", "text": "a long enough answer to cut"}, ConnectionFailed, True),
    ({"fault": "malformed", "text": "an answer"}, BadOutput, False),
])
@pytest.mark.parametrize("stream", [False, True])
def test_sdk_failures_are_classified(api: str, step: dict, kind: type, transient: bool, stream: bool) -> None:
    err = classify(_sdk_error(api, step, stream))
    assert type(err) is kind and err.transient is transient
    if step.get("retry_after"):
        assert err.retry_after_s == 3


def test_hang_is_a_timeout_and_unknown_errors_are_not_classified() -> None:
    assert isinstance(classify(_sdk_error("anthropic", {"fault": "hang"}, timeout=0.5)), BackendTimeout)
    assert classify(KeyError("a bug")) is None


def test_retry_after_forms() -> None:
    assert retry_after_s({"retry-after": "12"}) == 12
    assert retry_after_s({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    soon = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 <= retry_after_s({"retry-after": soon}) <= 31
    assert retry_after_s({"retry-after": "soon-ish"}) is None
    assert retry_after_s({}) is None


# ------------------------------------------------------------------ the retry policy


class Flaky:
    def __init__(self, *failures: BaseException, result: str = "ok"):
        self.failures, self.result, self.calls = list(failures), result, 0

    def __call__(self) -> str:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return self.result


def test_transient_errors_retry_then_succeed_honouring_retry_after() -> None:
    sleeps: list[tuple[str, float]] = []
    fn = Flaky(RateLimited("slow down", retry_after_s=0.2), Overloaded("busy"), ConnectionFailed("reset"))
    result = call_with_retries(fn, attempts=5, max_wait_s=0.3,
                               on_retry=lambda e, n, s: sleeps.append((e.error_class, s)))
    assert result == "ok" and fn.calls == 4
    assert [c for c, _ in sleeps] == ["rate_limit", "overloaded", "connection"]
    assert sleeps[0][1] == pytest.approx(0.2)         # the server's Retry-After
    assert all(0 <= s <= 0.3 for _, s in sleeps[1:])  # jittered backoff under the cap


def test_retry_after_is_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    sleeps: list[float] = []
    fn = Flaky(RateLimited("slow down", retry_after_s=3600))
    monkeypatch.setenv(MAX_WAIT_ENV, "0.1")
    call_with_retries(fn, attempts=3, max_wait_s=60, on_retry=lambda e, n, s: sleeps.append(s))
    assert sleeps == [0.1]


@pytest.mark.parametrize("error", [AuthFailed("bad key"), BadRequest("nope"), ContextWindowExceeded("long"),
                                   BadOutput("garbled")])
def test_permanent_errors_never_retry(error: Exception) -> None:
    fn = Flaky(error, error)
    with pytest.raises(type(error)):
        call_with_retries(fn, attempts=5, max_wait_s=0.1)
    assert fn.calls == 1


def test_attempts_and_deadline_bound_the_retries() -> None:
    fn = Flaky(*[Overloaded("busy")] * 10)
    with pytest.raises(Overloaded):
        call_with_retries(fn, attempts=3, max_wait_s=0.01)
    assert fn.calls == 3
    # A wait that would cross the deadline is not taken.
    fn = Flaky(RateLimited("slow down", retry_after_s=5), result="late")
    with pytest.raises(RateLimited):
        call_with_retries(fn, attempts=5, max_wait_s=10, deadline=time.monotonic() + 1)
    assert fn.calls == 1


def test_sdk_exceptions_are_classified_inside_the_policy() -> None:
    with ScriptedServer([{"fault": "500"}, {"fault": "401"}]) as srv:
        client = anthropic.Anthropic(api_key="k", base_url=srv.base_url, max_retries=0, timeout=5)

        def ask() -> object:
            return client.messages.create(model="m", max_tokens=5, messages=[{"role": "user", "content": "x"}])

        with pytest.raises(AuthFailed) as info:
            call_with_retries(ask, attempts=5, max_wait_s=0.05)
        assert isinstance(info.value.__cause__, anthropic.AuthenticationError)
        assert len(srv.completions()) == 2  # the 500 was retried, the 401 was not
