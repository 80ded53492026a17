"""The hub harness's stop: what was left running under the hub is reported and killed, so a
module whose processes outlive its hub fails (conftest.run_hub) instead of leaking them."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import psutil

from .hubkit import RunningHub

# A stand-in "hub": starts a child in a session of its own that ignores SIGTERM (as a server or a
# kernel that will not stop would), prints its pid, then waits to be terminated.
_STUBBORN_TREE = """
import signal, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(600)"],
    start_new_session=True, stdout=subprocess.PIPE, text=True)
child.stdout.readline()
print(child.pid, flush=True)
time.sleep(600)
"""


def test_h5_hub_stop_reports_and_kills_a_process_left_behind(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[RunningHub.__module__], "STOP_TIMEOUT_S", 2)   # seconds stop() waits
    hub = RunningHub(tmp_path, registry_url="sqlite://", master_key="unused")
    hub.proc = subprocess.Popen([sys.executable, "-c", _STUBBORN_TREE], stdout=subprocess.PIPE, text=True,
                                start_new_session=True)
    child_pid = int(hub.proc.stdout.readline())
    assert psutil.pid_exists(child_pid)

    leftovers = hub.stop()

    assert [entry.split()[0] for entry in leftovers] == [str(child_pid)]
    deadline = time.monotonic() + 10
    while psutil.pid_exists(child_pid) and psutil.Process(child_pid).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, "the leftover was not killed"
        time.sleep(0.05)


# A stand-in "hub" that dies on its own at once, leaving its child (a proxy, say) re-parented.
_ORPHANING_HUB = """
import subprocess, sys
child = subprocess.Popen([sys.executable, "-c", "import time; print('ready', flush=True); time.sleep(600)"],
                         start_new_session=True, stdout=subprocess.PIPE, text=True)
child.stdout.readline()
print(child.pid, flush=True)
"""


def test_h5_hub_stop_finds_what_a_hub_that_died_left_behind(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[RunningHub.__module__], "STOP_TIMEOUT_S", 2)
    hub = RunningHub(tmp_path, registry_url="sqlite://", master_key="unused")
    env = {**os.environ, "BYOK_NB_HOME": str(hub.home)}     # as the hub's children inherit it
    hub.proc = subprocess.Popen([sys.executable, "-c", _ORPHANING_HUB], stdout=subprocess.PIPE, text=True,
                                env=env, start_new_session=True)
    orphan_pid = int(hub.proc.stdout.readline())
    hub.proc.wait(10)
    assert psutil.Process(orphan_pid).ppid() != hub.proc.pid       # no longer under the hub

    leftovers = hub.stop()

    assert [entry.split()[0] for entry in leftovers] == [str(orphan_pid)]
    psutil.wait_procs([p for p in [_process(orphan_pid)] if p], timeout=10)
    assert _process(orphan_pid) is None or _process(orphan_pid).status() == psutil.STATUS_ZOMBIE


def _process(pid: int) -> psutil.Process | None:
    try:
        return psutil.Process(pid)
    except psutil.NoSuchProcess:
        return None
