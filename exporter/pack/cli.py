"""`sparkwatch rules`, `sparkwatch dashboards` and `sparkwatch deploy`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List

from ..config import ConfigError


def cmd_rules(argv: List[str]) -> int:
    """``sparkwatch rules``: the alerting rules, customised by a rules configuration,
    on standard output or into ``--out``. Exit status 2 for an invalid rules
    configuration."""
    p = argparse.ArgumentParser(
        prog="sparkwatch rules",
        description="Print the Prometheus alerting rules, customised by a rules config "
                    "(selectors, thresholds, windows, for: durations, time_scale).")
    p.add_argument("--config", metavar="FILE", help="rules configuration (YAML); default: the shipped defaults")
    p.add_argument("--out", metavar="FILE", help="write to FILE instead of standard output")
    args = p.parse_args(argv)
    from .rules import rules_yaml

    cfg = _rules_config(args.config)
    if cfg is None:
        return 2
    text = rules_yaml(cfg)
    if args.out:
        Path(args.out).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


def _rules_config(path):
    """The rules config of ``--config`` (None: the shipped defaults); None after
    printing the error when it is invalid."""
    from .rulesconfig import load_rules_config

    try:
        return load_rules_config(path)
    except ConfigError as e:
        print(f"sparkwatch: {e}", file=sys.stderr)
        return None


def _write_files(out: Path, files) -> int:
    """Write ``{relative path: content}`` below ``out``, printing each path."""
    for name, content in files.items():
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
        print(path)
    return 0


def cmd_dashboards(argv: List[str]) -> int:
    """``sparkwatch dashboards --out DIR``: the Grafana dashboards, with the rules
    configuration's selectors applied. Exit status 2 for an invalid rules
    configuration."""
    p = argparse.ArgumentParser(prog="sparkwatch dashboards",
                                description="Write the Grafana dashboards (JSON) into a directory.")
    p.add_argument("--out", metavar="DIR", required=True, help="directory to write the dashboards to")
    p.add_argument("--config", metavar="FILE",
                   help="rules configuration (YAML): its selector/selectors also apply to the panels")
    args = p.parse_args(argv)
    from .dashboards import dashboard_files

    cfg = _rules_config(args.config)
    return 2 if cfg is None else _write_files(Path(args.out), dashboard_files(cfg))


def cmd_deploy(argv: List[str]) -> int:
    """``sparkwatch deploy --out DIR``: the Kubernetes manifests (what
    ``deploy/kubernetes/`` holds with the defaults). Exit status 2 for an invalid
    rules configuration."""
    p = argparse.ArgumentParser(
        prog="sparkwatch deploy",
        description="Write the Kubernetes manifests (kustomization.yaml, the node DaemonSet, the cluster "
                    "Deployment, Services, ServiceMonitor, PodMonitors, the PrometheusRule and the dashboard "
                    "ConfigMaps) into a directory. See docs/deploy.md.")
    p.add_argument("--out", metavar="DIR", required=True, help="directory to write the manifests to")
    p.add_argument("--config", metavar="FILE",
                   help="rules configuration (YAML): customises the PrometheusRule and the dashboards")
    args = p.parse_args(argv)
    from .deploy import kubernetes_files

    cfg = _rules_config(args.config)
    return 2 if cfg is None else _write_files(Path(args.out), kubernetes_files(cfg))
