"""Command line.

    sparkwatch [--web.listen-address=:9951] [--web.config.file=WEB] [--web.max-connections=128]
               [--config.file=FILE] [--log.level=info]
    sparkwatch check-config [FILE | --config.file=FILE] [--web.config.file=WEB]

Further subcommands (``rules``, ``dashboards``, ...) register themselves in
:data:`SUBCOMMANDS`.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from typing import Callable, Dict, List, Optional

from . import __version__
from .config import ConfigError, load_config
from .doctor import cmd_doctor
from .pack.cli import cmd_dashboards, cmd_deploy, cmd_rules

DEFAULT_LISTEN = ":9951"
DEFAULT_MAX_CONNECTIONS = 128  # sparkwatch.web.DEFAULT_MAX_CONNECTIONS, without importing the web server here
LOG_LEVELS = ("debug", "info", "warn", "error")

log = logging.getLogger("sparkwatch")


def _setup_logging(level: str) -> None:
    """One escaped line per record on standard error, other libraries' included
    (urllib3 quotes a target's bytes), their repeats rate-limited: sparkwatch.logsafe."""
    from .logsafe import configure

    configure({"warn": logging.WARNING}.get(level, getattr(logging, level.upper())))


def _positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, got {text!r}")
    return n


def serve_parser() -> argparse.ArgumentParser:
    """The options of ``sparkwatch`` itself (the exporter); the flags are named as
    other Prometheus exporters name them (``--web.listen-address``, ``--web.config.file``)."""
    p = argparse.ArgumentParser(
        prog="sparkwatch",
        description="Prometheus exporter for long-running Apache Spark services. "
        f"Subcommands: {', '.join(sorted(SUBCOMMANDS))} (sparkwatch SUBCOMMAND --help).",
    )
    p.add_argument("--web.listen-address", dest="listen", default=DEFAULT_LISTEN,
                   help=f"address to listen on for the web interface and telemetry (default {DEFAULT_LISTEN})")
    p.add_argument("--web.config.file", dest="web_config", default=None, metavar="WEB",
                   help="web configuration file (exporter-toolkit format) that enables TLS and/or basic "
                   "authentication; see docs/security.md and https://github.com/prometheus/exporter-toolkit/"
                   "blob/master/docs/web-configuration.md")
    p.add_argument("--web.max-connections", dest="max_connections", type=_positive_int,
                   default=DEFAULT_MAX_CONNECTIONS, metavar="N",
                   help="requests handled at once; further ones are answered 503 "
                   f"(default {DEFAULT_MAX_CONNECTIONS})")
    p.add_argument("--config.file", dest="config", default=None,
                   help="YAML configuration file (default: built-in, the Spark UI at http://localhost:4040)")
    p.add_argument("--log.level", dest="log_level", default="info", choices=LOG_LEVELS,
                   help="only log messages with the given severity or above")
    p.add_argument("--version", action="version", version=f"sparkwatch {__version__}")
    return p


#: glibc's M_ARENA_MAX (malloc.h)
_M_ARENA_MAX = -8
#: malloc arenas the exporter uses, unless MALLOC_ARENA_MAX says otherwise
MALLOC_ARENAS = 2


def limit_malloc_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """Let glibc's malloc use at most ``arenas`` arenas. glibc gives threads arenas
    of their own (up to 8 per core); the memory a scrape's threads free stays in
    theirs, and the resident size of a long-running exporter crept up by a few
    percent over thousands of scrapes (benchmarks/bench_leak.py). Called before
    any thread starts; an explicit ``MALLOC_ARENA_MAX`` in the environment wins,
    and on another C library this does nothing. Returns whether it applied."""
    if os.environ.get("MALLOC_ARENA_MAX"):
        return False
    try:
        import ctypes
        import ctypes.util

        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(_M_ARENA_MAX, arenas))
    except (OSError, AttributeError):  # not glibc
        return False


def cmd_serve(argv: List[str]) -> int:
    """``sparkwatch [options]``: load the configuration and serve until SIGTERM or
    Ctrl-C. Exit status 2 for a bad configuration, web configuration or listen
    address (the error, naming the key, on standard error); 1 when the address
    cannot be bound; 0 after a clean shutdown."""
    args = serve_parser().parse_args(argv)
    limit_malloc_arenas()
    _setup_logging(args.log_level)
    try:
        config = load_config(args.config)
    except ConfigError as e:
        print(f"sparkwatch: {e}", file=sys.stderr)
        return 2
    web_config = None
    if args.web_config is not None:
        from .webconfig import load_web_config

        try:
            web_config = load_web_config(args.web_config)
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
        httpd = serve(app, args.listen, web_config=web_config, max_connections=args.max_connections)
    except OSError as e:
        print(f"sparkwatch: cannot listen on {args.listen}: {e.strerror}", file=sys.stderr)
        app.close()
        return 1
    log.info("sparkwatch %s started with %d targets (config: %s; web: %s)", __version__, len(app.targets),
             args.config or "built-in default",
             web_config.describe() if web_config is not None else "plain HTTP, no authentication")
    if web_config is not None and web_config.basic_auth_users and web_config.tls_server_config is None:
        log.warning("basic authentication without TLS: passwords cross the network in clear text")

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
    """``sparkwatch check-config``: validate the configuration file and/or the web
    configuration file as the exporter would load them, without starting it.
    Exit status 0 when every file given is valid, 2 otherwise."""
    p = argparse.ArgumentParser(prog="sparkwatch check-config",
                                description="Validate a configuration file and/or a web configuration "
                                "file and exit (0 when all given are valid).")
    p.add_argument("file", nargs="?", help="the configuration file (the same as --config.file)")
    p.add_argument("--config.file", dest="config_file", default=None, metavar="FILE",
                   help="the configuration file, as the exporter and the other commands take it")
    p.add_argument("--web.config.file", dest="web_config", default=None, metavar="WEB",
                   help="the web configuration file (--web.config.file)")
    args = p.parse_args(argv)
    if args.file is not None and args.config_file is not None and args.file != args.config_file:
        p.error(f"two configuration files given ({args.file} and --config.file {args.config_file}): give one")
    args.file = args.file or args.config_file
    if args.file is None and args.web_config is None:
        p.error("give a configuration file, --web.config.file, or both")
    rc = 0
    if args.file is not None:
        try:
            cfg = load_config(args.file)
        except ConfigError as e:
            print(f"sparkwatch: {e}", file=sys.stderr)
            rc = 2
        else:
            from .config import iter_targets

            n = sum(1 for _ in iter_targets(cfg))
            print(f"{args.file}: OK ({n} targets)")
    if args.web_config is not None:
        from .webconfig import load_web_config

        try:
            web = load_web_config(args.web_config)
        except ConfigError as e:
            print(f"sparkwatch: {e}", file=sys.stderr)
            rc = 2
        else:
            print(f"{args.web_config}: OK ({web.describe()})")
    return rc


SUBCOMMANDS: Dict[str, Callable[[List[str]], int]] = {
    "check-config": cmd_check_config,
    "rules": cmd_rules,
    "dashboards": cmd_dashboards,
    "deploy": cmd_deploy,
    "doctor": cmd_doctor,
}


def main(argv: Optional[List[str]] = None) -> int:
    """The ``sparkwatch`` command: a first argument naming a subcommand of
    :data:`SUBCOMMANDS` runs it with the rest; anything else runs the exporter.
    Returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in SUBCOMMANDS:
        return SUBCOMMANDS[argv[0]](argv[1:])
    return cmd_serve(argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
