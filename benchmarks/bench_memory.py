#!/usr/bin/env python3
"""What hostile targets cost the exporter's memory: its peak resident size
for scrapes of several targets that each answer the most expensive JSON they
can (docs/security.md, "Memory: what a scrape may hold").

Starts the HTTP servers of testbed/hostile_json.py on loopback (each shape of
hostile body at ``--size`` MiB, by default the exporter's 16 MiB body cap; a
history server whose ``--apps`` applications answer that much of floats on
every endpoint; a gzip bomb), ``--copies`` of each, ``--liars`` servers that
declare 16 MiB answers and send a byte now and then until the deadline (each
scrape then lasts the whole deadline), and a healthy target; then
the exporter (``python -m sparkwatch``) with a spark target for each, and scrapes
``GET /metrics`` ``--scrapes`` times. Prints, per scrape, the peak resident size
(``VmHWM``) above the idle exporter's, the resident size after the scrape, how
long it took and how many targets were down with ``limit``; then the bound
docs/security.md states for that many targets, and whether the peak stayed
within it.

    .venv/bin/python benchmarks/bench_memory.py [--size 16] [--copies 1] [--apps 40] [--liars 2] [--scrapes 3]
"""

from __future__ import annotations

import argparse
import sys
import time
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sparkwatch.httpbody import (MAX_BODY_BYTES, MAX_HELD_BYTES, MAX_TARGET_BYTES,  # noqa: E402
                                 RSS_OVERHEAD_BYTES, TARGET_FLOOR_BYTES)
from testbed.exporter import exporter_process, samples, scrape  # noqa: E402
from testbed.faulty_http import faulty_server  # noqa: E402
from testbed.hostile_json import LyingServer, MiB, hostile_fleet, status_bytes  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=float, default=16.0, help="MiB per hostile body (default 16, the body cap)")
    ap.add_argument("--copies", type=int, default=1, help="servers of each kind (default 1)")
    ap.add_argument("--apps", type=int, default=40, help="applications of the hostile history server")
    ap.add_argument("--liars", type=int, default=2, help="targets that declare 16 MiB and trickle (default 2)")
    ap.add_argument("--scrapes", type=int, default=3)
    args = ap.parse_args()
    size = int(args.size * MiB)

    with ExitStack() as stack:
        targets = []
        for c in range(args.copies):
            for name, srv in hostile_fleet(stack, size, args.apps).items():
                targets.append({"name": f"{name}-{c}", "url": srv.url, "timeout": 60})
        for i in range(args.liars):
            liar = stack.enter_context(LyingServer(MAX_BODY_BYTES))
            targets.append({"name": f"liar-{i}", "url": liar.url, "timeout": 60})
        good = stack.enter_context(faulty_server("ok"))
        targets.append({"name": "good", "url": good.url})
        config = {"exporter": {"scrape_timeout": 60}, "spark": targets}
        n = len(targets)
        bound = min(n * MAX_TARGET_BYTES, MAX_HELD_BYTES + n * TARGET_FLOOR_BYTES) + RSS_OVERHEAD_BYTES
        print(f"{n - 1} hostile targets ({args.size:g} MiB bodies; {args.liars} liars) and a healthy one")
        with exporter_process(config) as (base, proc):
            idle = status_bytes(proc.pid, "VmHWM")
            print(f"idle exporter: {idle / MiB:.0f} MiB resident")
            print(f"{'scrape':>6} {'peak above idle':>16} {'resident after':>15} {'took':>6} {'down (limit)':>13} good")
            for i in range(1, args.scrapes + 1):
                t0 = time.monotonic()
                ss = samples(scrape(base))
                took = time.monotonic() - t0
                peak, rss = status_bytes(proc.pid, "VmHWM"), status_bytes(proc.pid, "VmRSS")
                down = sum(1 for name, lab, v in ss if name == "sparkwatch_target_up" and v == 0)
                limited = {lab["target"] for name, lab, v in ss
                           if name == "sparkwatch_target_scrape_errors_total" and lab["reason"] == "limit" and v > 0}
                good_up = any(name == "sparkwatch_target_up" and lab["target"] == "good" and v == 1
                              for name, lab, v in ss)
                print(f"{i:>6} {(peak - idle) / MiB:>12.0f} MiB {(rss - idle) / MiB:>11.0f} MiB {took:>5.1f}s "
                      f"{down:>5} ({len(limited):>3}) {'up' if good_up else 'DOWN'}")
        grew = peak - idle
        ok = grew <= bound
        print(f"bound for {n} targets: min({n} x {MAX_TARGET_BYTES // MiB}, {MAX_HELD_BYTES // MiB} + {n} x "
              f"{TARGET_FLOOR_BYTES // MiB}) + {RSS_OVERHEAD_BYTES // MiB} = {bound / MiB:.0f} MiB above idle: "
              f"{'met' if ok else 'NOT met'} ({grew / MiB:.0f} MiB)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
