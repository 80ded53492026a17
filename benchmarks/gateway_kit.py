"""What the gateway benchmarks (F-6, F-7, F-8) share: a registry with one model on a loopback
upstream and a token, ``byok-nb gateway`` started as a user starts it, the LiteLLM proxy (from
the pinned venv of tests/gateway/litellmkit.py) configured with the same upstream as an
``openai/`` model, a zero-delay fake provider in a process of its own (so that it does not share
the measuring process's GIL), nginx serving a static OpenAI reply, and a keep-alive HTTP client.

Not a test module: the benchmarks import it (``python benchmarks/bench_gateway_*.py``).
"""
from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "gateway"))
import litellmkit  # noqa: E402  (the pinned LiteLLM venv; lives with the tests that use it too)

import byok_nb  # noqa: E402

PROVIDER_KEY = "sk-bench-upstream-key-000123"
LITELLM_MASTER_KEY = "sk-bench-litellm-master-000456"   # the proxy refuses to start without one
SLUG = "bench-chat"
UPSTREAM_MODEL = "bench-model"
MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]
ORG, ADMIN, USER = "acme", "ana", "cy"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def clean_env(home: Path, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("BYOK_NB_", "OPENROUTER_", "JUPYTERHUB_"))}
    env["BYOK_NB_HOME"] = str(home)
    env.update(settings)
    return env


def wait_http(url: str, proc: subprocess.Popen, log: Path, headers: dict[str, str] | None = None,
              timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=5) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.25)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s:\n{log.read_text()[-3000:]}")


def stop(proc: subprocess.Popen, timeout: float = 60) -> None:
    """A clean stop (SIGTERM, as a service manager sends it): the gateway flushes its usage."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- the registry -------------------------------------------------------------------------------
def make_registry(url: str, key: str, home: Path, upstream_base_url: str):
    """Org acme, admin ana, contributor cy, model ``bench-chat`` on the upstream; returns
    (registry, cy's session, cy's token). Opened with ``home`` as BYOK_NB_HOME."""
    os.environ["BYOK_NB_HOME"] = str(home)
    reg = byok_nb.open_registry(url, master_key=key)
    reg.create_org(ORG)
    reg.create_project(ORG, "search")
    reg.add_member(ORG, ADMIN, role="org_admin")
    reg.add_member(ORG, USER, role="contributor", project="search")
    admin = reg.session(org=ORG, user=ADMIN)
    admin.add_model(provider="openai_compatible", base_url=upstream_base_url, api_key=PROVIDER_KEY,
                    provider_model_id=UPSTREAM_MODEL, display_name="Bench chat", slug=SLUG,
                    max_tokens=64, input_cost_per_token="0.000001", output_cost_per_token="0.000002",
                    test=False)
    token = admin.create_api_token(USER, "bench")
    return reg, reg.session(org=ORG, user=USER), token


def count_usage_rows(url: str) -> int:
    from sqlalchemy import create_engine, text
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(text("SELECT count(*) FROM usage_log")).scalar_one()
    finally:
        engine.dispose()


@contextmanager
def postgres_database() -> Iterator[str]:
    """A throwaway database on the server scripts/system_deps.sh starts (role byok_nb)."""
    import psycopg
    name = f"byok_nb_bench_{os.getpid()}"
    admin = dict(host="127.0.0.1", port=5432, user="byok_nb", password="byok_nb", dbname="byok_nb_test",
                 autocommit=True)
    with psycopg.connect(**admin) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://byok_nb:byok_nb@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(**admin) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# -- processes ----------------------------------------------------------------------------------
@contextmanager
def gateway(url: str, key: str, home: Path, token: str, *extra: str) -> Iterator[tuple[str, subprocess.Popen]]:
    """``byok-nb gateway --host 127.0.0.1 --port P`` on the registry; yields (base URL, process)."""
    port = free_port()
    log = home / f"gateway-{port}.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "byok_nb.cli", "gateway", "--host", "127.0.0.1",
                                 "--port", str(port), *extra],
                                env=clean_env(home, BYOK_NB_DATABASE_URL=url, BYOK_NB_MASTER_KEY=key),
                                stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(base + "/v1/models", proc, log, {"Authorization": f"Bearer {token}"})
        yield base, proc
    finally:
        stop(proc)


@contextmanager
def litellm_proxy(upstream_base_url: str, home: Path) -> Iterator[str]:
    """The LiteLLM proxy, one worker, the upstream as model ``openai/bench-model`` under the name
    ``bench-chat``. No database (no ``database_url``: LiteLLM then keeps no spend logs), no
    callbacks; a master key (it refuses to start without one), which clients send as their token."""
    if not litellmkit.is_ready(proxy=True):
        raise SystemExit(f"no LiteLLM proxy venv at {litellmkit.venv_path(proxy=True)}: run "
                         f"`make litellm-proxy-env` (python tests/gateway/litellmkit.py --proxy)")
    config = home / "litellm.yaml"
    config.write_text(json.dumps({    # JSON is YAML
        "model_list": [{"model_name": SLUG, "litellm_params": {
            "model": f"openai/{UPSTREAM_MODEL}", "api_base": upstream_base_url, "api_key": PROVIDER_KEY}}],
        "litellm_settings": {"telemetry": False, "drop_params": True, "num_retries": 0},
        "general_settings": {"master_key": LITELLM_MASTER_KEY, "disable_spend_logs": True,
                             "disable_error_logs": True},
    }))
    port = free_port()
    log = home / f"litellm-{port}.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([str(litellmkit.venv_path(proxy=True) / "bin" / "litellm"), "--config", str(config),
                                 "--host", "127.0.0.1", "--port", str(port), "--num_workers", "1"],
                                env=litellmkit.env(proxy=True, LITELLM_LOG="ERROR"), cwd=home,
                                stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(base + "/health/liveliness", proc, log)
        yield base
    finally:
        stop(proc)


FAKE_SCRIPT = """
import sys, time
from byok_nb.testing.fake_providers import FakeOpenAIProvider
fake = FakeOpenAIProvider("openai", api_key=sys.argv[1], reply="Paris is the capital of France.").start()
print(fake.base_url, flush=True)
sys.stdin.read()          # until the benchmark closes our stdin
fake.stop()
"""


@contextmanager
def fake_provider() -> Iterator[str]:
    """The zero-delay loopback fake (``openai`` profile) in a process of its own; yields its base URL."""
    proc = subprocess.Popen([sys.executable, "-c", FAKE_SCRIPT, PROVIDER_KEY], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        yield proc.stdout.readline().strip()
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)


STATIC_REPLY = json.dumps({
    "id": "chatcmpl-static", "object": "chat.completion", "created": 1764547200, "model": UPSTREAM_MODEL,
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Paris is the capital of France."},
                 "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 14, "completion_tokens": 7, "total_tokens": 21}})


@contextmanager
def nginx_upstream(work: Path) -> Iterator[tuple[str, Path]]:
    """nginx answering every POST to /v1/chat/completions with a static OpenAI reply (with usage);
    yields (base URL, access log — one line a request, to count what the gateway sent). The same
    reply at ``/alone/v1/...`` is not logged: for measuring nginx by itself."""
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(binary).exists():
        raise SystemExit("nginx is missing: run `make bench-deps` (scripts/system_deps.sh --bench)")
    prefix = work / "nginx"
    (prefix / "logs").mkdir(parents=True, exist_ok=True)
    port = free_port()
    access = prefix / "logs" / "access.log"
    body = STATIC_REPLY.replace("\\", "\\\\").replace("'", "\\'")
    (prefix / "nginx.conf").write_text(f"""
worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log {access} combined buffer=64k flush=1s;
  client_body_temp_path {prefix}/body;
  keepalive_requests 1000000;
  server {{
    listen 127.0.0.1:{port};
    location = /v1/chat/completions {{
      default_type application/json;
      return 200 '{body}';
    }}
    # The same reply, not logged: nginx measured alone, without its lines in the log that counts
    # the gateway's provider calls (a buffered tail written late would be counted as the gateway's).
    location = /alone/v1/chat/completions {{
      access_log off;
      default_type application/json;
      return 200 '{body}';
    }}
  }}
}}
""")
    proc = subprocess.Popen([binary, "-p", str(prefix), "-c", str(prefix / "nginx.conf")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((prefix / "logs" / "error.log").read_text())
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/v1", access
    finally:
        stop(proc)


def access_lines(access: Path) -> int:
    return sum(1 for _ in open(access)) if access.exists() else 0


# -- a keep-alive client ------------------------------------------------------------------------
class Client:
    """One keep-alive connection posting chat completions (the same client for every hop measured,
    so its own cost cancels out of the differences)."""

    def __init__(self, base_url: str, token: str | None, model: str):
        parts = base_url.split("://", 1)[1]
        host, _, rest = parts.partition("/")
        self.path = "/" + rest.rstrip("/") + "/chat/completions" if rest else "/chat/completions"
        self.conn = http.client.HTTPConnection(host, timeout=60)
        self.headers = {"Content-Type": "application/json"}
        if token:
            self.headers["Authorization"] = f"Bearer {token}"
        self.model = model

    def body(self, **extra) -> bytes:
        return json.dumps({"model": self.model, "messages": MESSAGES, **extra}).encode()

    def _send(self, body: bytes) -> http.client.HTTPResponse:
        """Send, reconnecting once when the server closed the idle keep-alive connection (uvicorn
        does after 5 s; a round of another path can take longer) — as HTTP clients do."""
        try:
            self.conn.request("POST", self.path, body, self.headers)
            return self.conn.getresponse()
        except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
            self.conn.close()
            self.conn.request("POST", self.path, body, self.headers)
            return self.conn.getresponse()

    def post(self, body: bytes) -> dict:
        reply = self._send(body)
        data = reply.read()
        if reply.status != 200:
            raise RuntimeError(f"{self.path}: HTTP {reply.status}: {data[:500]!r}")
        return json.loads(data)

    def first_chunk(self, body: bytes) -> float:
        """Seconds from sending a streamed request to the first chunk carrying text; reads the
        stream to its end so the connection can be reused."""
        start = time.perf_counter()
        reply = self._send(body)
        if reply.status != 200:
            raise RuntimeError(f"{self.path}: HTTP {reply.status}: {reply.read()[:500]!r}")
        first = None
        while True:
            line = reply.readline()
            if not line:
                break
            if first is None and line.startswith(b"data: {"):
                chunk = json.loads(line[6:])
                if chunk.get("choices") and (chunk["choices"][0].get("delta") or {}).get("content"):
                    first = time.perf_counter() - start
        if first is None:
            raise RuntimeError("the stream carried no text")
        return first

    def close(self) -> None:
        self.conn.close()
