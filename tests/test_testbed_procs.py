"""testbed.procs.stop_process_group, which every test, the lab and the benchmarks stop
their processes through."""

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil

from testbed.procs import stop_process_group


def _run(script: str) -> subprocess.CompletedProcess:
    """``script`` in a Python of its own session (whatever it signals, pytest is not in its group)."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True,
                          timeout=60, start_new_session=True, cwd=str(Path(__file__).resolve().parent.parent))


def test_a_process_in_its_own_group_is_stopped_with_its_children():
    p = subprocess.Popen(["sh", "-c", "sleep 300 & sleep 300 & wait"], start_new_session=True)
    try:
        end = time.monotonic() + 30
        while len(kids := psutil.Process(p.pid).children()) < 2:
            assert time.monotonic() < end, kids
            time.sleep(0.01)
    finally:
        stop_process_group(p, grace=5)
    assert p.returncode is not None
    gone, alive = psutil.wait_procs(kids, timeout=10)
    assert not alive


def test_a_process_of_the_callers_group_is_stopped_alone():
    """A process started without ``start_new_session`` shares its caller's group: that
    group is the caller's own (and pytest's), which must not be signalled."""
    r = _run("""
        import subprocess
        from testbed.procs import stop_process_group
        p = subprocess.Popen(["sleep", "300"])
        stop_process_group(p, grace=5)
        print("caller alive; child", p.returncode)
    """)
    assert r.returncode == 0, (r.returncode, r.stderr)
    assert r.stdout.strip() == "caller alive; child -15"


def test_no_grace_is_sigkill_at_once(tmp_path):
    """grace=0 is a crash: SIGKILL, no SIGTERM first (a JVM would run its shutdown hooks
    and remove its perf-data file)."""
    marker = tmp_path / "got-sigterm"
    p = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import signal, sys, time
        def term(*_):
            open({str(marker)!r}, "w").close()
            time.sleep(300)
        signal.signal(signal.SIGTERM, term)
        print("ready", flush=True)
        time.sleep(300)
    """)], stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert p.stdout.readline() == "ready\n"
    finally:
        stop_process_group(p, grace=0)
    p.stdout.close()
    assert p.returncode == -9
    time.sleep(0.2)  # a SIGTERM handler that had begun would have written by now
    assert not marker.exists()
