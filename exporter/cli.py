"""Command line.

    sparkwatch [--web.listen-address=:9951] [--config.file=FILE] [--log.level=info]
    sparkwatch check-config FILE

Further subcommands (``rules``, ``dashboards``, ...) register themselves in
:data:`SUBCOMMANDS`.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from typing import Callable, Dict, List, Optional

from . import __version__
from .config import ConfigError, load_config
from .pack.cli import cmd_dashboards, cmd_rules

DEFAULT_LISTEN = ":9951"
LOG_LEVELS = ("debug", "info", "warn", "error")

log = logging.getLogger("sparkwatch")


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level={"warn": logging.WARNING}.get(level, getattr(logging, level.upper())),
        format="ts=%(asctime)s level=%(levelname)s caller=%(module)s msg=%(message)r",
        stream=sys.stderr,
    )


def serve_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sparkwatch",
        description="Prometheus exporter for long-running Apache Spark services. "
        f"Subcommands: {', '.join(sorted(SUBCOMMANDS))} (sparkwatch SUBCOMMAND --help).",
    )
    p.add_argument("--web.listen-address", dest="listen", default=DEFAULT_LISTEN,
                   help=f"address to listen on for the web interface and telemetry (default {DEFAULT_LISTEN})")
    p.add_argument("--config.file", dest="config", default=None,
                   help="YAML configuration file (default: built-in, the Spark UI at http://localhost:4040)")
    p.add_argument("--log.level", dest="log_level", default="info", choices=LOG_LEVELS,
                   help="only log messages with the given severity or above")
    p.add_argument("--version", action="version", version=f"sparkwatch {__version__}")
    return p


def cmd_serve(argv: List[str]) -> int:
    args = serve_parser().parse_args(argv)
    _setup_logging(args.log_level)
    try:
        config = load_config(args.config)
    except ConfigError as e:
        print(f"sparkwatch: {e}", file=sys.stderr)
        return 2
    from .web import App, parse_listen_address, serve

    try:
        parse_listen_address(args.listen)
    except ValueError as e:
        print(f"sparkwatch: {e}", file=sys.stderr)
        return 2
    app = App(config)
    try:
        httpd = serve(app, args.listen)
    except OSError as e:
        print(f"sparkwatch: cannot listen on {args.listen}: {e.strerror}", file=sys.stderr)
        app.close()
        return 1
    log.info("sparkwatch %s started with %d targets (config: %s)", __version__, len(app.targets),
             args.config or "built-in default")

    def _stop(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        log.info("shutting down")
    finally:
        httpd.server_close()
        app.close()
    return 0


def cmd_check_config(argv: List[str]) -> int:
    p = argparse.ArgumentParser(prog="sparkwatch check-config",
                                description="Validate a configuration file and exit (0 when valid).")
    p.add_argument("file")
    args = p.parse_args(argv)
    try:
        cfg = load_config(args.file)
    except ConfigError as e:
        print(f"sparkwatch: {e}", file=sys.stderr)
        return 2
    from .config import iter_targets

    n = sum(1 for _ in iter_targets(cfg))
    print(f"{args.file}: OK ({n} targets)")
    return 0


SUBCOMMANDS: Dict[str, Callable[[List[str]], int]] = {
    "check-config": cmd_check_config,
    "rules": cmd_rules,
    "dashboards": cmd_dashboards,
}


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in SUBCOMMANDS:
        return SUBCOMMANDS[argv[0]](argv[1:])
    return cmd_serve(argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
