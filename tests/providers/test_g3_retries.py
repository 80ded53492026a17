"""SPEC G-3: connection errors, 429, 500, 502, 503, 504 are retried with backoff and jitter,
Retry-After (seconds or HTTP-date) honoured up to a cap, inside one total deadline; other 4xx
never. Waits go through an injected sleep and clock, so nothing here waits for real."""
from __future__ import annotations

import socket
from email.utils import format_datetime
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from provider_kit import KEYS, chat, target_for

from byok_nb.core.errors import ProviderError
from byok_nb.providers.egress import EgressRefused
from byok_nb.providers.retry import (RetryPolicy, acall_with_retries, attempt_deadline, call_with_retries,
                                     deadline_exceeded, is_deadline, retry_after_from_headers)
from byok_nb.providers.retry_after import retry_after_seconds
from byok_nb.providers.transport import transport_error
from byok_nb.testing import FakeOpenAIProvider
from byok_nb.testing.fake_providers import RecordedRequest, Reply
from asyncrun import run_async

NOW = datetime(2027, 1, 15, 12, 0, 0, tzinfo=timezone.utc)   # a fixed wall clock for HTTP-dates


class FakeClock:
    """A monotonic clock that only moves when the code under test sleeps."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.sleeps.append(seconds)
        self.now += seconds

    async def asleep(self, seconds: float) -> None:
        self.sleep(seconds)


def transient(status: int = 503, retry_after: float | None = None) -> ProviderError:
    return ProviderError(f"HTTP {status}", status_code=status, retry_after=retry_after, transient=True)


def failing(errors: list[Exception], result: str = "ok"):
    """A call that raises each of ``errors`` in turn, then returns ``result``; counts its calls."""
    calls = []

    def fn():
        calls.append(1)
        if len(calls) <= len(errors):
            raise errors[len(calls) - 1]
        return result
    fn.calls = calls
    return fn


# -- Retry-After ---------------------------------------------------------------------------------

@pytest.mark.parametrize("value, expected", [
    ("7", 7.0), (" 0 ", 0.0), ("1.5", 1.5), ("120", 120.0),
    (format_datetime(NOW + timedelta(seconds=30), usegmt=True), 30.0),
    ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),          # a date already past: retry now
])
def test_g3_retry_after_seconds_and_http_date(value, expected):
    assert retry_after_seconds(value, now=NOW) == pytest.approx(expected)


@pytest.mark.parametrize("value", [None, "", "   ", "-5", "-0.5", "soon", "nan", "inf", "1e999",
                                   "Wed, 99 Oct 2015 07:28:00 GMT", "7 seconds", "x" * 500])
def test_g3_retry_after_negative_or_garbage_is_ignored(value):
    assert retry_after_seconds(value, now=NOW) is None


def test_g3_retry_after_ms_header_wins_when_readable():
    assert retry_after_from_headers(httpx.Headers({"retry-after-ms": "250", "retry-after": "9"})) == 0.25
    assert retry_after_from_headers(httpx.Headers({"retry-after-ms": "junk", "retry-after": "9"})) == 9.0
    assert retry_after_from_headers(httpx.Headers({})) is None


# -- the policy ----------------------------------------------------------------------------------

def test_g3_transient_errors_are_retried_until_success():
    clock = FakeClock()
    fn = failing([transient(503), transient(429)])
    result, attempts = call_with_retries(fn, RetryPolicy(max_retries=2), None,
                                         sleep=clock.sleep, clock=clock, rand=lambda: 0.5)
    assert (result, attempts, len(fn.calls)) == ("ok", 3, 3)
    # full jitter: rand() * base * 2**n -> 0.5 * 0.5, 0.5 * 1.0
    assert clock.sleeps == [pytest.approx(0.25), pytest.approx(0.5)]


def test_g3_no_retry_on_first_success():
    clock = FakeClock()
    assert call_with_retries(lambda: 42, RetryPolicy(), None, sleep=clock.sleep, clock=clock) == (42, 1)
    assert clock.sleeps == []


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 413, 422])
def test_g3_other_4xx_are_never_retried(status):
    clock = FakeClock()
    error = ProviderError(f"HTTP {status}", status_code=status)
    fn = failing([error])
    with pytest.raises(ProviderError) as caught:
        call_with_retries(fn, RetryPolicy(max_retries=5), None, sleep=clock.sleep, clock=clock)
    assert caught.value is error and len(fn.calls) == 1 and clock.sleeps == []


def test_g3_other_exceptions_pass_through_untouched():
    clock = FakeClock()
    fn = failing([KeyError("bug")])
    with pytest.raises(KeyError):
        call_with_retries(fn, RetryPolicy(), None, sleep=clock.sleep, clock=clock)
    assert len(fn.calls) == 1


def test_g3_retries_used_up_raise_the_last_error():
    clock = FakeClock()
    errors = [transient(502), transient(503), transient(504)]
    fn = failing(errors)
    with pytest.raises(ProviderError) as caught:
        call_with_retries(fn, RetryPolicy(max_retries=2), None, sleep=clock.sleep, clock=clock,
                          rand=lambda: 1.0)
    assert caught.value is errors[-1]
    assert len(fn.calls) == 3 and clock.sleeps == [0.5, 1.0]


def test_g3_max_retries_zero_means_one_attempt():
    clock = FakeClock()
    fn = failing([transient()])
    with pytest.raises(ProviderError):
        call_with_retries(fn, RetryPolicy(max_retries=0), None, sleep=clock.sleep, clock=clock)
    assert len(fn.calls) == 1


def test_g3_backoff_is_exponential_capped_and_fully_jittered():
    policy = RetryPolicy(base=0.5, cap=8.0)
    error = transient()
    assert [policy.delay(n, error, lambda: 1.0) for n in range(7)] == [0.5, 1, 2, 4, 8, 8, 8]
    assert policy.delay(3, error, lambda: 0.0) == 0.0          # full jitter reaches down to 0
    assert policy.delay(3, error, lambda: 0.25) == 1.0
    assert policy.delay(10_000, error, lambda: 1.0) == 8.0     # no overflow on absurd counts


def test_g3_retry_after_replaces_the_backoff_up_to_its_cap():
    clock = FakeClock()
    fn = failing([transient(429, retry_after=7), transient(429, retry_after=3600)])
    policy = RetryPolicy(max_retries=2, retry_after_cap=30.0)
    result, attempts = call_with_retries(fn, policy, None, sleep=clock.sleep, clock=clock, rand=lambda: 0.0)
    assert attempts == 3 and clock.sleeps == [7, 30.0]


def test_g3_never_sleeps_past_the_deadline():
    clock = FakeClock(start=100.0)
    first, second = transient(503), transient(429, retry_after=20)
    fn = failing([first, second])
    with pytest.raises(ProviderError) as caught:
        call_with_retries(fn, RetryPolicy(max_retries=5), 110.0, sleep=clock.sleep, clock=clock,
                          rand=lambda: 1.0)
    # 0.5 s fits before 110; the provider's 20 s does not: the 429 is raised at once.
    assert caught.value is second
    assert clock.sleeps == [0.5] and clock.now < 110.0


def test_g3_deadline_passed_during_an_attempt_stops_retrying():
    clock = FakeClock(start=100.0)
    errors = [transient(503)]

    def slow():
        clock.now += 15                      # the attempt itself used up the time
        raise errors[0]
    with pytest.raises(ProviderError) as caught:
        call_with_retries(slow, RetryPolicy(), 110.0, sleep=clock.sleep, clock=clock, rand=lambda: 0.0)
    assert caught.value is errors[0] and clock.sleeps == []


def test_g3_deadline_already_passed_is_a_504_without_calling():
    clock = FakeClock(start=100.0)
    fn = failing([])
    with pytest.raises(ProviderError) as caught:
        call_with_retries(fn, RetryPolicy(), 100.0, sleep=clock.sleep, clock=clock)
    assert caught.value.status_code == 504 and "deadline exceeded" in caught.value.message
    assert fn.calls == []


def test_g3_a_retry_cut_off_by_the_deadline_reports_the_providers_last_answer():
    """The first attempt got a 500; the retry ran into the total deadline (its read was bounded
    by it): the caller learns what the provider said, not only that time ran out."""
    clock = FakeClock(start=0.0)
    first = transient(500)
    calls = []

    def fn():
        calls.append(1)
        if len(calls) == 1:
            raise first
        attempt_deadline(30.0)          # the transport asks when its read must end: the deadline
        clock.now = 10.0                # ... and the read timed out there
        raise ProviderError("timed out", status_code=502, transient=True)
    with pytest.raises(ProviderError) as caught:
        call_with_retries(fn, RetryPolicy(), 10.0, sleep=clock.sleep, clock=clock, rand=lambda: 0.0)
    assert caught.value is first and len(calls) == 2


def test_g3_a_first_attempt_cut_off_by_the_deadline_is_the_504():
    clock = FakeClock(start=0.0)

    def fn():
        attempt_deadline(30.0)
        clock.now = 10.0
        raise ProviderError("timed out", status_code=502, transient=True)
    with pytest.raises(ProviderError) as caught:
        call_with_retries(fn, RetryPolicy(), 10.0, sleep=clock.sleep, clock=clock)
    assert caught.value.status_code == 504 and is_deadline(caught.value)


def test_g3_async_retry_cut_off_by_the_deadline_reports_the_providers_last_answer():
    clock = FakeClock(start=0.0)
    first = transient(503)
    outcomes = [first, deadline_exceeded()]

    async def afn():
        raise outcomes.pop(0)
    with pytest.raises(ProviderError) as caught:
        run_async(acall_with_retries(afn, RetryPolicy(), 60.0, sleep=clock.asleep, clock=clock,
                                     rand=lambda: 0.0))
    assert caught.value is first and outcomes == []
    assert not is_deadline(first) and not is_deadline(transient(504))


def test_g3_async_retries_follow_the_same_policy():
    clock = FakeClock(start=0.0)
    errors = [transient(500), transient(429, retry_after=2), ProviderError("bad", status_code=400)]
    calls = []

    async def afn():
        calls.append(1)
        raise errors[len(calls) - 1]
    with pytest.raises(ProviderError) as caught:
        run_async(acall_with_retries(afn, RetryPolicy(max_retries=5), None, sleep=clock.asleep,
                                       clock=clock, rand=lambda: 1.0))
    assert caught.value is errors[2] and len(calls) == 3 and clock.sleeps == [0.5, 2]


def test_g3_async_success_reports_attempts_and_504_before_any_call():
    clock = FakeClock(start=0.0)
    outcomes = [transient(502)]

    async def afn():
        if outcomes:
            raise outcomes.pop()
        return "done"
    assert run_async(acall_with_retries(afn, RetryPolicy(), 60.0, sleep=clock.asleep, clock=clock,
                                          rand=lambda: 0.0)) == ("done", 2)
    with pytest.raises(ProviderError) as caught:
        run_async(acall_with_retries(afn, RetryPolicy(), -1.0, sleep=clock.asleep, clock=clock))
    assert caught.value.status_code == 504


# -- what the transport marks transient ----------------------------------------------------------

class Flaky(FakeOpenAIProvider):
    """An OpenAI-shaped fake answering its first replies with ``failures`` (status, headers)."""

    def __init__(self, failures: list[tuple[int, dict[str, str]]], **options) -> None:
        options.setdefault("api_key", KEYS["openai"])
        super().__init__("openai", **options)
        self.failures = list(failures)

    def handle(self, request: RecordedRequest) -> Reply:
        if self.failures:
            status, headers = self.failures.pop(0)
            message = ("Rate limit reached for requests" if status == 429 else
                       "The server had an error while processing your request. Sorry about that!")
            return Reply(status, {"error": {"message": message, "type": "requests" if status == 429
                                            else "server_error", "param": None, "code": None}}, headers)
        return super().handle(request)


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_g3_transient_statuses_from_a_provider_are_retried(hub, start_fake, status):
    fake = start_fake(Flaky([(status, {"Retry-After": "1"})]))
    adapter = hub.adapter(target_for("openai", fake))
    clock = FakeClock()
    result, attempts = call_with_retries(lambda: adapter.chat(chat()), RetryPolicy(), None,
                                         sleep=clock.sleep, clock=clock)
    assert attempts == 2 and len(fake.requests) == 2 and result.text
    assert clock.sleeps == [1.0]


def test_g3_a_429_carries_its_retry_after_and_the_providers_words(hub, openai_fake):
    fake = openai_fake("openai", rate_limit=True, retry_after=7)
    with pytest.raises(ProviderError) as caught:
        hub.adapter(target_for("openai", fake)).chat(chat())
    error = caught.value
    assert (error.status_code, error.transient, error.retry_after) == (429, True, 7.0)
    assert error.provider_message == "Rate limit reached for requests"


def test_g3_an_http_date_retry_after_from_a_provider(hub, start_fake):
    when = datetime.now(timezone.utc) + timedelta(hours=1)
    fake = start_fake(Flaky([(503, {"Retry-After": format_datetime(when, usegmt=True)})]))
    with pytest.raises(ProviderError) as caught:
        hub.adapter(target_for("openai", fake)).chat(chat())
    assert caught.value.transient and 3000 < caught.value.retry_after <= 3600


def test_g3_a_providers_400_is_not_transient_and_not_retried(hub, openai_fake):
    fake = openai_fake("openai", models=["real/model"])
    adapter = hub.adapter(target_for("openai", fake, model="nope/model"))
    clock = FakeClock()
    with pytest.raises(ProviderError) as caught:
        call_with_retries(lambda: adapter.chat(chat("nope/model")), RetryPolicy(max_retries=3), None,
                          sleep=clock.sleep, clock=clock)
    assert caught.value.status_code == 404 and not caught.value.transient
    assert len(fake.requests) == 1 and clock.sleeps == []


def test_g3_a_bad_key_401_is_not_retried(hub, openai_fake):
    fake = openai_fake("openai")
    adapter = hub.adapter(target_for("openai", fake, api_key="sk-wrong-000000000000"))
    with pytest.raises(ProviderError) as caught:
        call_with_retries(lambda: adapter.chat(chat()), RetryPolicy(), None, sleep=FakeClock().sleep)
    assert caught.value.status_code == 401 and not caught.value.transient and len(fake.requests) == 1


def test_g3_a_refused_connection_is_transient_and_retried(hub):
    with socket.socket() as sock:       # a port nobody listens on once closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    adapter = hub.adapter(target_for("openai", base_url=f"http://127.0.0.1:{port}/v1"))
    clock = FakeClock()
    calls = []

    def attempt():
        calls.append(1)
        return adapter.chat(chat())
    with pytest.raises(ProviderError) as caught:
        call_with_retries(attempt, RetryPolicy(max_retries=2), None, sleep=clock.sleep, clock=clock)
    error = caught.value
    assert error.status_code == 502 and error.transient and error.retry_after is None
    assert len(calls) == 3 and len(clock.sleeps) == 2


@pytest.mark.parametrize("exc, is_transient", [
    (httpx.ReadTimeout("read timed out"), True),
    (httpx.ConnectTimeout("connect timed out"), True),
    (httpx.ConnectError("[Errno 111] Connection refused"), True),
    (httpx.RemoteProtocolError("Server disconnected without sending a response."), True),
    (httpx.ReadError("[Errno 104] Connection reset by peer"), True),
    (httpx.ConnectError("DNS lookup failed for nowhere.invalid: Name or service not known"), False),
    (httpx.ConnectError("DNS lookup failed for api.example.com: Temporary failure in name resolution"), True),
    (httpx.ConnectError("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed"), False),
    (httpx.UnsupportedProtocol("Request URL has an unsupported protocol 'ftp://'."), False),
])
def test_g3_which_transport_failures_are_transient(exc, is_transient):
    error = transport_error(exc, url="https://api.example.com/v1/chat/completions", label="OpenAI",
                            secrets=[], timeout=30)
    assert error.status_code == 502 and error.transient is is_transient


@pytest.mark.parametrize("status, expected", [(429, True), (500, True), (502, True), (503, True),
                                              (504, True), (400, False), (401, False), (404, False),
                                              (422, False), (None, False)])
def test_g3_transient_follows_a_given_status_unless_said(status, expected):
    error = ProviderError("x", status_code=status)
    assert error.transient is expected and error.retry_after is None
    assert ProviderError("x", status_code=status, transient=not expected).transient is (not expected)


def test_g3_a_refused_destination_is_not_retried(hub):
    adapter = hub.adapter(target_for("openai", base_url="http://169.254.169.254/v1"))
    calls = []

    def attempt():
        calls.append(1)
        return adapter.chat(chat())
    with pytest.raises(ProviderError) as caught:
        call_with_retries(attempt, RetryPolicy(max_retries=3), None, sleep=FakeClock().sleep)
    assert isinstance(caught.value, EgressRefused) and not caught.value.transient and len(calls) == 1


def test_g3_a_malformed_reply_or_a_redirect_is_not_retried(hub, openai_fake):
    for options in ({"malformed": True}, {"redirect_to": "https://elsewhere.example/v1"}):
        fake = openai_fake("openai", **options)
        with pytest.raises(ProviderError) as caught:
            call_with_retries(lambda: hub.adapter(target_for("openai", fake)).chat(chat()), RetryPolicy(),
                              None, sleep=FakeClock().sleep)
        assert caught.value.status_code == 502 and not caught.value.transient
        assert len(fake.requests) == 1
