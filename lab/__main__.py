"""python -m lab [SCENARIO ...|all] [--json FILE] [--baseline-minutes N]

Runs the scenarios (several at once, each in its own process), prints what each
alert did, and the table of the run (as in docs/lab.md)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

from . import core
from .core import Result, log, markdown_table, report


def _order() -> List[str]:
    from .scenarios import SCENARIOS

    return list(SCENARIOS)


def run_one(name: str, workdir: Path, baseline_minutes: Optional[float]) -> List[Result]:
    from .scenarios import SCENARIOS, baseline, cluster

    wd = core.workdir(name, workdir)
    log(f"{name}: starting (work directory {wd})")
    try:
        minutes = {} if baseline_minutes is None else {"minutes": baseline_minutes}
        if name == "baseline":
            return baseline(wd, **minutes)
        if name == "cluster":
            return cluster(wd, **minutes)
        return SCENARIOS[name](wd)
    except core.LabError as e:
        r = Result(name.upper(), name, "", "", "", time.time())
        r.problems.append(f"could not run: {e}")
        return [r]
    finally:
        core.cleanup()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m lab", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("scenarios", nargs="*", default=["all"],
                   help=f"any of: {', '.join(_order())}, or all (default: {', '.join(ALL)})")
    p.add_argument("--json", metavar="FILE", help="write the results as JSON")
    p.add_argument("--baseline-minutes", type=float, default=None,
                   help="how long the healthy baseline runs (default: 15 on the cluster, 10 in local mode)")
    p.add_argument("--workdir", metavar="DIR", help="where the scenarios keep their logs (default: a temp dir)")
    p.add_argument("--sequential", action="store_true", help="one scenario at a time")
    p.add_argument("--table", metavar="FILE", help="only print the table (as in docs/lab.md) of a --json FILE of an earlier run")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.table:
        print(markdown_table([Result.from_json(d) for d in json.loads(Path(a.table).read_text())]))
        return 0

    names = ALL if "all" in a.scenarios else a.scenarios
    unknown = [n for n in names if n not in _order()]
    if unknown:
        p.error(f"unknown scenario(s): {', '.join(unknown)}; known: {', '.join(_order())}")
    workdir = Path(a.workdir) if a.workdir else Path(tempfile.mkdtemp(prefix="sparkwatch-lab-"))
    workdir.mkdir(parents=True, exist_ok=True)
    os.chmod(workdir, 0o755)
    core.install_handlers()
    started = time.time()

    results: List[Result] = []
    try:
        if len(names) == 1 or a.sequential:
            for n in names:
                rs = run_one(n, workdir, a.baseline_minutes)
                results += rs
                if a.child:
                    continue
                for r in rs:
                    print(report(r), flush=True)
        else:
            results = run_parallel(names, workdir, a.baseline_minutes)
    except KeyboardInterrupt:
        log("interrupted: stopping everything")
        core.cleanup()
        return 130
    finally:
        core.cleanup()

    if a.json:
        Path(a.json).write_text(json.dumps([r.to_json() for r in results], indent=1))
    if not a.child:
        print()
        print(f"lab: {len(results)} results in {time.time() - started:.0f}s (logs: {workdir})")
        print()
        print(markdown_table(results))
    return 0 if results and all(r.ok for r in results) else 1


#: the phases of a run, one after the other; in a phase the lanes run at the same time, the
#: scenarios of a lane one after the other. `cluster` (the standalone cluster: S3a, S3b, S4c,
#: S5 in executors, next to the healthy baseline) watches every JVM of the host, so nothing
#: else that starts a JVM runs beside it: only S1 (the Livy stand-in, Python). The local-mode
#: scenarios that the cluster supersedes (s3-heap, s3-threads, s5, the local baseline) run
#: only when named.
PHASES = [[["cluster"], ["s1"]], [["s2"], ["s4"]]]
LANES = [lane for phase in PHASES for lane in phase]
ALL = [n for lane in LANES for n in lane]


def phases_for(names: List[str]) -> List[List[List[str]]]:
    phases = [[[n for n in lane if n in names] for lane in phase] for phase in PHASES]
    phases.append([[n] for n in names if not any(n in lane for lane in LANES)])
    return [[lane for lane in phase if lane] for phase in phases if any(phase)]


def lanes_for(names: List[str]) -> List[List[str]]:
    return [lane for phase in phases_for(names) for lane in phase]


def run_parallel(names: List[str], workdir: Path, baseline_minutes: Optional[float]) -> List[Result]:
    import threading

    outcome: Dict[str, List[Result]] = {}

    def run_child(n: str) -> None:
        out = workdir / f"{n}.json"
        cmd = [sys.executable, "-m", "lab", n, "--child", "--json", str(out), "--workdir", str(workdir)]
        if baseline_minutes is not None:
            cmd += ["--baseline-minutes", str(baseline_minutes)]
        logf = workdir / f"{n}.out"
        proc = core.start(cmd, logf, grace=30)
        try:
            proc.wait(timeout=25 * 60)  # every scenario bounds its own waits; this is the last resort
        except subprocess.TimeoutExpired:
            pass
        core.kill(proc, grace=30)
        if out.exists():
            rs = [Result.from_json(d) for d in json.loads(out.read_text())]
        else:
            r = Result(n.upper(), n, "", "", "", time.time())
            r.problems.append(f"the scenario process failed (rc={proc.returncode})" + core.tail(logf, 40))
            rs = [r]
        for r in rs:
            print(report(r), flush=True)
        outcome[n] = rs

    def run_lane(lane: List[str]) -> None:
        for n in lane:
            run_child(n)

    for phase in phases_for(names):
        threads = [threading.Thread(target=run_lane, args=(lane,), daemon=True) for lane in phase]
        for t in threads:
            t.start()
        for t in threads:
            while t.is_alive():
                t.join(1)  # in short steps: Ctrl-C/SIGTERM must get through
    order = {n: i for i, n in enumerate(_order())}
    return [r for n in sorted(outcome, key=order.get) for r in outcome[n]]


if __name__ == "__main__":
    sys.exit(main())
