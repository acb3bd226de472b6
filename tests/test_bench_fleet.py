"""benchmarks/bench_fleet.py reports a target that fails as a whole, as the exporter
would (target down, its reason), and fails its goals: it does not crash."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_a_target_down_is_reported_and_fails_the_goals():
    # every answer comes after 1.5 s, the deadline is 0.5 s: the YARN listing is never read
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_fleet.py"), "--apps", "4", "--delay", "1.5",
                        "--deadline", "0.5", "--mode", "yarn", "--scrapes", "1", "--jobs", "2"],
                       capture_output=True, text=True, timeout=120)
    assert "Traceback" not in r.stderr, r.stderr
    lines = r.stdout.splitlines()
    assert [line.split()[-1] for line in lines if line.startswith("yarn ") and "scrape" not in line][:2] == \
        ["down:timeout", "down:timeout"], r.stdout
    assert "yarn failed 2 of 2 scrapes: down:timeout 2" in [" ".join(line.split()) for line in lines], r.stdout
    assert lines[-1] == "GOAL NOT MET" and r.returncode == 1, r.stdout
