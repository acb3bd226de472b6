"""``sparkwatch doctor``: the diagnosis for the person on call, in one command.

    sparkwatch doctor [--config.file F] [--rules.config R] [--json] [--watch SECONDS]
                      [--prometheus URL [--prometheus.selector M] [--prometheus.timeout S]
                       [--prometheus.user U --prometheus.password-file F | --prometheus.bearer-token-file F]
                       [--prometheus.ca-file F]]

It reads every configured target once (the built-in default configuration
when none is given) with the exporter's own collectors and scrape engine
(:mod:`.reading`), judges each failure signature with the alerting pack's own
thresholds (:mod:`.thresholds`; the judgements, one module per signature, in
:mod:`.judgements`, on :mod:`.findings`) and prints the findings,
worst first (:mod:`.render`). ``--watch N`` takes a second reading N seconds
later, for what only a trend shows (stderr says when it comes).
``--prometheus URL`` adds what only the series' history shows: the pack's alerts
Prometheus has firing or pending for these targets, with the numbers behind
them (:mod:`.prometheus`). Read-only towards every target and Prometheus, like
the exporter.

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

from ..collector import Deadline
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
    g = p.add_argument_group(
        "Prometheus", "what only the series' history shows (heap floors rising for hours, leaks, queries and "
                      "applications that are gone): the alerting pack's alerts Prometheus has firing or pending "
                      "for these targets, with the numbers behind them")
    g.add_argument("--prometheus", dest="prometheus", default=None, metavar="URL",
                   help="Prometheus' URL (with its path prefix, if any), e.g. http://prometheus:9090; it must "
                        "load the pack's rules, generated with the same --rules.config")
    g.add_argument("--prometheus.selector", dest="prometheus_selector", default="", metavar="MATCHERS",
                   help="label matchers that pick this exporter's alerts, e.g. 'instance=~\"node7:.*\"' (other "
                        "exporters may have targets of the same names: every host's jvm targets do); needed for "
                        "the alert about the exporter itself (Prometheus' up)")
    g.add_argument("--prometheus.timeout", dest="prometheus_timeout", type=_seconds, default=None, metavar="SECONDS",
                   help="seconds all of Prometheus' answers may take together (default 30)")
    g.add_argument("--prometheus.user", dest="prometheus_user", default=None, metavar="USER",
                   help="basic auth user")
    g.add_argument("--prometheus.password-file", dest="prometheus_password_file", default=None, metavar="FILE",
                   help="basic auth password, in a file")
    g.add_argument("--prometheus.bearer-token-file", dest="prometheus_bearer_token_file", default=None,
                   metavar="FILE", help="bearer token, in a file")
    g.add_argument("--prometheus.ca-file", dest="prometheus_ca_file", default=None, metavar="FILE",
                   help="the CA that signed Prometheus' certificate (https)")
    return p


def prometheus_source(args):
    """The Prometheus the flags name, or None; ConfigError naming the flag when they are wrong."""
    from .prometheus import DEFAULT_TIMEOUT, PrometheusSource

    given = [f for f in ("prometheus_selector", "prometheus_timeout", "prometheus_user", "prometheus_password_file",
                         "prometheus_bearer_token_file", "prometheus_ca_file") if getattr(args, f)]
    if args.prometheus is None:
        if given:
            raise ConfigError(f"--{given[0].replace('_', '.', 1).replace('_', '-')}: needs --prometheus URL")
        return None
    return PrometheusSource(args.prometheus, selector=args.prometheus_selector,
                            timeout=args.prometheus_timeout or DEFAULT_TIMEOUT, user=args.prometheus_user,
                            password_file=args.prometheus_password_file,
                            bearer_token_file=args.prometheus_bearer_token_file, ca_file=args.prometheus_ca_file)


def run(config, rules_config=None, watch: Optional[float] = None, host: bool = True,
        waiting: Optional[Callable[[float], None]] = None, prometheus=None):
    """Read (once, or twice ``watch`` seconds apart) and judge: (findings, readings, history).
    ``waiting(watch)`` is called when the first reading is done and the wait begins;
    ``prometheus`` (a :class:`~.prometheus.PrometheusSource`) is read after the targets
    (``history`` is None without it)."""
    from .findings import Judge
    from .reading import Reader, scan_jvms
    from .thresholds import Thresholds

    thresholds = Thresholds(rules_config)
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
    history = prometheus.read(config, thresholds) if prometheus is not None else None
    scan = scan_jvms(list(config.jvm), Deadline(config.exporter.scrape_timeout)) if host and config.jvm else None
    findings = Judge(readings, thresholds, scan, config, history=history).judge()
    return findings, readings, history


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
        prometheus = prometheus_source(args)
    except ConfigError as e:
        print(f"sparkwatch doctor: {e}", file=sys.stderr)
        return 2
    from .render import to_json, to_text

    # the collectors' warnings would interleave with the report, which says it all
    log = logging.getLogger("sparkwatch")
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        findings, readings, history = run(config, rules_config, args.watch, waiting=say_when, prometheus=prometheus)
    finally:
        log.setLevel(level)
    if args.json:
        print(to_json(findings, readings[-1]))
    else:
        notes = []
        if args.watch is None:
            notes.append("Trends (a stalled query, sessions, classes, threads or descriptors growing) need a "
                         "second reading: sparkwatch doctor --watch 60.")
        if history is None:
            notes.append("Trends over hours (heap floors, leaks, queries and applications that are gone) are "
                         "Prometheus': sparkwatch doctor --prometheus URL.")
        if args.config is None:
            notes.append("Read with the built-in configuration (the Spark UI at http://localhost:4040 and every "
                         "JVM of this host); give the exporter's with --config.file.")
        colour = sys.stdout.isatty() and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"
        sys.stdout.write(to_text(findings, readings, colour=colour, notes=notes, history=history))
    sys.stdout.flush()
    return 1 if any(f.severity in ("critical", "warning") for f in findings) else 0
