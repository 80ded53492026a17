"""Build the package's wheel and keep a fresh (not editable) virtualenv to install it into.

Two halves, so that the test suite itself needs no network:

* ``python tests/install/wheelkit.py`` (run by ``make test`` before pytest, like the other set-up
  steps) builds the wheel and creates the cached virtualenv with ``byok_nb[app]`` and every
  dependency from the package index;
* the tests build the wheel again from the source as it is now and reinstall only that build,
  offline (``--no-index --no-deps``).

The virtualenv lives under ``$BYOK_NB_TEST_CACHE`` (default ``~/.cache/byok_nb-tests``), keyed on
``pyproject.toml`` and the Python version, so a change of dependencies makes a new one.
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("BYOK_NB_TEST_CACHE") or Path.home() / ".cache" / "byok_nb-tests")


def run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} exited {done.returncode}:\n"
                             f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done


def clean_env(home: Path, venv: Path | None = None) -> dict[str, str]:
    """No PYTHONPATH (it would put the source tree first), no byok_nb or Jupyter settings of the
    developer: only what the installed package finds by itself."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PIP_REQUIRE_VIRTUALENV")
           and not k.startswith(("BYOK_NB_", "JUPYTER", "JUPYTERHUB_", "OPENROUTER_"))}
    env["HOME"] = str(home)    # no ~/.local/share/jupyter kernels from the developer
    env["PIP_CACHE_DIR"] = str(CACHE / "pip")
    if venv is not None:
        env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


def build_wheel(out: Path) -> Path:
    """``pip wheel --no-deps`` of a copy of the source (an in-tree build would leave build/ and
    *.egg-info in the work tree), built with this interpreter's setuptools (no build isolation:
    an isolated build would fetch setuptools from the index)."""
    src = out / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (ROOT / name).exists():
            shutil.copy2(ROOT / name, src / name)
    shutil.copytree(ROOT / "byok_nb", src / "byok_nb",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".ipynb_checkpoints"))
    dist = out / "dist"
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
         "--wheel-dir", str(dist), str(src)], env=clean_env(out), cwd=out)
    wheels = list(dist.glob("byok_nb-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def venv_path() -> Path:
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes())
    digest.update(sys.version.encode())
    return CACHE / f"wheel-venv-{digest.hexdigest()[:16]}"


def is_ready(venv: Path) -> bool:
    return (venv / ".ready").exists()


def prepare_venv(wheel: Path, home: Path) -> Path:
    """Create the cached virtualenv with ``byok_nb[app]`` and its dependencies (from the index).
    Set-up, not a test: ``make test`` runs it before pytest."""
    venv = venv_path()
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / f"{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not is_ready(venv):
            # Paths inside a venv are absolute: build it where it lives; the marker publishes it.
            shutil.rmtree(venv, ignore_errors=True)
            env = clean_env(home)
            run([sys.executable, "-m", "venv", str(venv)], env=env)
            run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
                 f"byok_nb[app] @ {wheel.as_uri()}"], env=env, timeout=1800)
            (venv / ".ready").write_text(wheel.name)
    return venv


def reinstall_offline(venv: Path, wheel: Path, home: Path) -> None:
    """Same dependencies: reinstall only this build of the package, without the network."""
    with open(CACHE / f"{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)          # parallel test workers take turns
        run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-index", "--no-deps",
             "--force-reinstall", "--find-links", str(wheel.parent), "byok_nb"],
            env=clean_env(home), timeout=600)


if __name__ == "__main__":
    if is_ready(venv_path()):
        print(f"wheelkit: {venv_path()} is ready")
        sys.exit(0)
    with tempfile.TemporaryDirectory(prefix="byok_nb_wheel_") as tmp:
        base = Path(tmp)
        (base / "home").mkdir()
        print(f"wheelkit: building the wheel and {venv_path()} (dependencies from the index)", flush=True)
        prepare_venv(build_wheel(base), base / "home")
