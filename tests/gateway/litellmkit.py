"""A virtualenv of its own with LiteLLM pinned to one version, so that a real LiteLLM client (and,
for the benchmarks, the LiteLLM proxy) can talk to the gateway without LiteLLM's many
dependencies entering the product's venv.

Two halves, as for the wheel tests (``tests/install/wheelkit.py``), so that the suite needs no
network:

* ``python tests/gateway/litellmkit.py`` (``make litellm-env``, run by ``make test`` before pytest)
  creates the cached venv with ``litellm==VERSION`` from the package index;
  ``python tests/gateway/litellmkit.py --proxy`` makes a second one with ``litellm[proxy]`` (the
  benchmarks' side-by-side proxy; its extra pulls in far more, so the tests do not pay for it);
* tests and benchmarks run ``python`` from that venv with :func:`env` — which sets
  ``LITELLM_LOCAL_MODEL_COST_MAP=True`` so LiteLLM reads its bundled price map instead of fetching
  one from GitHub at import.

The venvs live under ``$BYOK_NB_TEST_CACHE`` (default ``~/.cache/byok_nb-tests``), keyed on the
LiteLLM version, the extra and the Python version: changing ``VERSION`` makes a new one.
"""
from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path

# One version for the client and the proxy, chosen on 2026-12-01: the newest whose `proxy` extra
# installs from the index (1.108.14 and 1.110.2 need `litellm-proxy-extras` / `litellm-proxy` builds it
# does not carry).
# A bump is a deliberate change.
VERSION = "1.106.12"

CACHE = Path(os.environ.get("BYOK_NB_TEST_CACHE") or Path.home() / ".cache" / "byok_nb-tests")


def venv_path(proxy: bool = False) -> Path:
    flavour = "proxy" if proxy else "client"
    return CACHE / f"litellm-{VERSION}-{flavour}-py{sys.version_info.major}.{sys.version_info.minor}"


def python(proxy: bool = False) -> Path:
    return venv_path(proxy) / "bin" / "python"


def is_ready(proxy: bool = False) -> bool:
    return (venv_path(proxy) / ".ready").exists()


def env(proxy: bool = False, **extra: str) -> dict[str, str]:
    """The environment to run the LiteLLM venv's programs in: nothing of byok_nb's source tree or
    settings (LiteLLM must see only what a user's machine would give it), no fetch at start, and
    no proxy settings that would send loopback traffic elsewhere."""
    out = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PIP_REQUIRE_VIRTUALENV")
           and not k.startswith(("BYOK_NB_", "OPENAI_", "LITELLM_"))
           and k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
    out["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    out["NO_PROXY"] = out["no_proxy"] = "127.0.0.1,localhost"
    out["PATH"] = f"{venv_path(proxy) / 'bin'}{os.pathsep}{out.get('PATH', '')}"
    out.update(extra)
    return out


def prepare(proxy: bool = False) -> Path:
    """Create the cached venv (from the package index). Set-up, not a test."""
    venv = venv_path(proxy)
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / f"{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)          # two makes at once build it once
        if not is_ready(proxy):
            # Paths inside a venv are absolute: build it where it lives; the marker publishes it.
            shutil.rmtree(venv, ignore_errors=True)
            base = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
            base["PIP_CACHE_DIR"] = str(CACHE / "pip")
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, env=base)
            spec = f"litellm[proxy]=={VERSION}" if proxy else f"litellm=={VERSION}"
            subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", spec],
                           check=True, env=base, timeout=1800)
            # Importing it once, offline-configured, proves the venv is usable before we publish it.
            subprocess.run([str(venv / "bin" / "python"), "-c", "import litellm"],
                           check=True, env=env(proxy), timeout=300)
            (venv / ".ready").write_text(VERSION)
    return venv


if __name__ == "__main__":
    want_proxy = "--proxy" in sys.argv[1:]
    if is_ready(want_proxy):
        print(f"litellmkit: {venv_path(want_proxy)} is ready")
        sys.exit(0)
    print(f"litellmkit: creating {venv_path(want_proxy)} (LiteLLM {VERSION} from the index)", flush=True)
    prepare(want_proxy)
