"""SPEC G-3's one total deadline bounds each attempt, not only the waits between attempts: a
provider that hangs cannot hold ``chat(..., timeout=T)`` past T on the sync path (the async path
cancels the attempt), and the provider timeout still bounds an attempt when it comes sooner.

The fake holds its answer until the test lets it go, so "the call returned at its deadline" is
shown without a clock: it returned (504) while the provider had not answered yet."""
from __future__ import annotations

import threading

import pytest

import byok_nb
from byok_nb.core.errors import ProviderError
from byok_nb.testing.fake_providers import FakeOpenAIProvider
from asyncrun import run_async

KEY = "sk-compat-deadline-key-0001"


class Hanging:
    """A reply that waits until released; counts the answers given."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.answered: list[str] = []

    def __call__(self, request) -> str:
        self.release.wait(60)
        self.answered.append(request.path)
        return "late"


@pytest.fixture
def hanging():
    reply = Hanging()
    fake = FakeOpenAIProvider("openai", api_key=KEY, reply=reply).start()
    try:
        yield fake, reply
    finally:
        reply.release.set()
        fake.stop()


def session_on(registry_url, master_key, fake, *, provider_timeout: float):
    reg = byok_nb.open_registry(registry_url, master_key=master_key, timeout=provider_timeout)
    reg.create_org("acme")
    reg.add_member("acme", "ana", role="org_admin")
    s = reg.session(org="acme", user="ana")
    s.add_model(provider="openai_compatible", base_url=fake.base_url, api_key=KEY, provider_model_id="m-1",
                display_name="Hangs", slug="hangs", max_tokens=64, test=False)
    return reg, s


@pytest.mark.parametrize("stream", [False, True], ids=["chat", "stream"])
def test_g3_sync_chat_returns_at_its_deadline_while_the_provider_hangs(hanging, registry_url, master_key, stream):
    fake, reply = hanging
    reg, s = session_on(registry_url, master_key, fake, provider_timeout=30.0)
    try:
        with pytest.raises(ProviderError) as caught:
            s.chat("hangs", "hi", timeout=0.5, stream=stream)
        assert reply.answered == [] and len(fake.requests) >= 1   # returned before the provider answered
        assert caught.value.status_code == 504
        assert "time limit" in caught.value.message
        row = s.usage().iloc[-1]
        assert (row["user"], row["model"], bool(row["ok"])) == ("ana", "hangs", False)
        assert row["attempts"] == len(fake.requests)
    finally:
        reply.release.set()
        reg.close()


def test_g3_async_chat_returns_at_its_deadline_too(hanging, registry_url, master_key):
    fake, reply = hanging
    reg, s = session_on(registry_url, master_key, fake, provider_timeout=30.0)
    try:
        with pytest.raises(ProviderError) as caught:
            run_async(s.achat("hangs", "hi", timeout=0.5))
        assert reply.answered == [] and caught.value.status_code == 504
    finally:
        reply.release.set()
        reg.close()


def test_g3_the_provider_timeout_bounds_an_attempt_when_it_is_sooner(hanging, registry_url, master_key):
    """The smaller of the two: with a provider timeout of 0.3 s and a deadline of 60 s, each
    attempt ends at 0.3 s, as the provider's timeout (502, retried), not the deadline."""
    fake, reply = hanging
    reg, s = session_on(registry_url, master_key, fake, provider_timeout=0.3)
    try:
        with pytest.raises(ProviderError) as caught:
            s.chat("hangs", "hi", timeout=60, max_retries=1)
        assert reply.answered == []
        assert caught.value.status_code == 502 and "timed out after 0.3 s" in caught.value.message
        assert len(fake.requests) == 2 and s.usage().iloc[-1]["attempts"] == 2
    finally:
        reply.release.set()
        reg.close()


# -- the rule, without a network -----------------------------------------------------------------
def _attempt_that_times_out(clock, own_timeout):
    """An attempt whose HTTP operation asks for ``own_timeout`` seconds, gets the sooner of that
    and the deadline, and times out there (the clock moves to the bound)."""
    from byok_nb.providers.retry import within_total

    def fn():
        clock[0] = within_total(clock[0] + own_timeout)
        raise ProviderError("timed out", status_code=502, transient=True)
    return fn


@pytest.mark.parametrize("own_timeout, status", [(30.0, 504), (10.1, 502), (5.0, 502)])
def test_g3_an_attempt_is_a_504_only_when_the_deadline_cut_it_short(own_timeout, status):
    from byok_nb.providers.retry import RetryPolicy, call_with_retries

    clock = [100.0]
    fn = _attempt_that_times_out(clock, own_timeout)
    with pytest.raises(ProviderError) as caught:
        call_with_retries(fn, RetryPolicy(max_retries=0), 110.0, sleep=lambda s: None,
                          clock=lambda: clock[0], rand=lambda: 0.0)
    # 30 s asked, 10 s left: the deadline ended it. 10.1 s asked: the same limit (the provider's
    # own timeout is named). 5 s: the provider's timeout came first.
    assert caught.value.status_code == status
    assert clock[0] == min(110.0, 100.0 + own_timeout)
