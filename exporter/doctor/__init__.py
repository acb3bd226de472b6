"""``sparkwatch doctor``: the diagnosis for the person on call, in one command.

    sparkwatch doctor [--config.file F] [--rules.config R] [--json] [--watch SECONDS]

It reads every configured target once (the built-in default configuration
when none is given) with the exporter's own collectors and scrape engine
(:mod:`.reading`), judges each failure signature with the alerting pack's own
thresholds (:mod:`.thresholds`; the judgements, one module per signature, in
:mod:`.judgements`, on :mod:`.findings`) and prints the findings,
worst first (:mod:`.render`). ``--watch N`` takes a second reading N seconds
later, for what only a trend shows (stderr says when it comes). Read-only
towards every target, like the exporter.

Exit status: 0 nothing worse than info, 1 a warning or worse, 2 it could not
run (a bad configuration, a bad argument).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from typing import Callable, List, Optional

from ..config import ConfigError, load_config

__all__ = ["cmd_doctor", "run"]


def _seconds(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        v = -1.0
    if not 0 < v <= 86400:
        raise argparse.ArgumentTypeError(f"must be a number of seconds above 0 (at most 86400), got {text!r}")
    return v


def parser() -> argparse.ArgumentParser:
    """The command line of ``sparkwatch doctor``."""
    p = argparse.ArgumentParser(
        prog="sparkwatch doctor",
        description="Read every configured target once and print what is wrong, worst first: each failure "
                    "signature (S1 to S5) judged with the alerting pack's thresholds, and what makes sparkwatch "
                    "blind (setup). Exit status: 0 nothing worse than info, 1 a warning or worse, "
                    "2 it could not run.")
    p.add_argument("--config.file", dest="config", default=None, metavar="FILE",
                   help="the exporter's configuration file (default: built-in, the Spark UI at "
                        "http://localhost:4040 and every JVM of this host)")
    p.add_argument("--rules.config", dest="rules_config", default=None, metavar="FILE",
                   help="the rules configuration the alerts were generated with (sparkwatch rules --config): "
                        "its thresholds and disabled alerts apply here too (default: the shipped thresholds)")
    p.add_argument("--json", action="store_true", help="print the findings and targets as JSON")
    p.add_argument("--watch", type=_seconds, default=None, metavar="SECONDS",
                   help="take a second reading SECONDS later, for what only a trend shows (a stalled query, "
                        "sessions, classes or threads growing)")
    return p


def run(config, rules_config=None, watch: Optional[float] = None, host: bool = True,
        waiting: Optional[Callable[[float], None]] = None):
    """Read (once, or twice ``watch`` seconds apart) and judge: (findings, readings).
    ``waiting(watch)`` is called when the first reading is done and the wait begins."""
    from .findings import Judge
    from .reading import Reader, scan_jvms
    from .thresholds import Thresholds

    reader = Reader(config)
    try:
        readings = [reader.read()]
        if watch:
            if waiting is not None:
                waiting(watch)
            time.sleep(watch)
            readings.append(reader.read())
    finally:
        reader.close()
    scan = scan_jvms(list(config.jvm)) if host and config.jvm else None
    findings = Judge(readings, Thresholds(rules_config), scan, config).judge()
    return findings, readings


def say_when(watch: float) -> None:
    """On stderr (stdout is the report): when the second reading comes."""
    at = time.strftime("%H:%M:%S", time.localtime(time.time() + watch))
    print(f"sparkwatch doctor: first reading done; second reading at {at} (in {watch:g} s)...",
          file=sys.stderr, flush=True)


def cmd_doctor(argv: List[str]) -> int:
    """``sparkwatch doctor ARGS``: read, judge, print; the exit status (0, 1 or 2)."""
    args = parser().parse_args(argv)
    try:
        config = load_config(args.config)
        rules_config = None
        if args.rules_config is not None:
            from ..pack.rulesconfig import load_rules_config

            rules_config = load_rules_config(args.rules_config)
    except ConfigError as e:
        print(f"sparkwatch doctor: {e}", file=sys.stderr)
        return 2
    from .render import to_json, to_text

    # the collectors' warnings would interleave with the report, which says it all
    log = logging.getLogger("sparkwatch")
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        findings, readings = run(config, rules_config, args.watch, waiting=say_when)
    finally:
        log.setLevel(level)
    if args.json:
        print(to_json(findings, readings[-1]))
    else:
        notes = []
        if args.watch is None:
            notes.append("Trends (a stalled query, sessions, classes, threads or descriptors growing) need a "
                         "second reading: sparkwatch doctor --watch 60.")
        if args.config is None:
            notes.append("Read with the built-in configuration (the Spark UI at http://localhost:4040 and every "
                         "JVM of this host); give the exporter's with --config.file.")
        colour = sys.stdout.isatty() and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"
        sys.stdout.write(to_text(findings, readings, colour=colour, notes=notes))
    sys.stdout.flush()
    return 1 if any(f.severity in ("critical", "warning") for f in findings) else 0
