"""Render the alert definitions (``alerts/``) as Prometheus rules under a rules
configuration, and their war-story and healthy replays as promtool tests."""

from __future__ import annotations

import textwrap
from typing import Any, Dict, List, Optional

import yaml

from .alerts import ALERTS
from .model import DURATION, NUMBER, Alert, Replay
from .promql import (
    PREFIXES,
    format_duration,
    format_number,
    inject,
    join_matchers,
    parse_duration,
    render_description_labels,
    substitute,
)
from .rulesconfig import RulesConfig
from .signatures import SIGNATURE_ORDER, SIGNATURES

RULES_FILE = "alerts/sparkwatch.rules.yml"
TESTS_FILE = "alerts/tests/sparkwatch.rules.test.yml"


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper, data: str):
    if "\n" in data:
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", data)


_Dumper.add_representer(str, _str)


def dump_yaml(data: Any) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, width=100000, allow_unicode=True)


# --------------------------------------------------------------------------
# Rendering one alert


def param_values(alert: Alert, cfg: RulesConfig) -> Dict[str, str]:
    """The ``$name`` substitutions of an alert under ``cfg``."""
    settings = cfg.alert(alert.name)
    out: Dict[str, str] = {}
    for name, p in alert.params.items():
        v = getattr(settings.params, name)
        if v is None:
            v = p.default
        if p.kind == DURATION:
            secs = parse_duration(v) * (cfg.time_scale if p.scales else 1.0)
            out[name] = format_duration(secs)
            out[name + "_s"] = format_number(round(secs, 3))
            out[name + "_half"] = format_duration(secs / 2)
        elif p.kind == NUMBER:
            out[name] = format_number(float(v))
            out[name + "_pct"] = format_number(round(float(v) * 100, 6))
        else:
            out[name] = str(v)
    out["for_duration"] = for_duration(alert, cfg)
    return out


def for_duration(alert: Alert, cfg: RulesConfig) -> str:
    settings = cfg.alert(alert.name)
    return format_duration(parse_duration(settings.for_ or alert.for_) * cfg.time_scale)


def matchers(alert: Alert, cfg: RulesConfig) -> Dict[str, str]:
    settings = cfg.alert(alert.name)
    return {p: join_matchers(cfg.selector, getattr(cfg.selectors, p), settings.selector) for p in PREFIXES}


def render_expr(alert: Alert, cfg: RulesConfig, expr: Optional[str] = None) -> str:
    """The alert's expression under ``cfg`` (selectors injected, parameters substituted), or
    ``expr`` rendered the same way (one of its ``evidence`` expressions)."""
    expr = textwrap.dedent(alert.expr if expr is None else expr).strip()
    return substitute(inject(expr, matchers(alert, cfg)), param_values(alert, cfg))


def runbook_url(alert: Alert, cfg: RulesConfig) -> str:
    return f"{cfg.runbook_base_url.rstrip('/')}/{alert.name}.md"


def severity(alert: Alert, cfg: RulesConfig) -> str:
    """The alert's severity under ``cfg`` (a rules configuration may change it)."""
    return cfg.alert(alert.name).severity or alert.severity


def static_labels(alert: Alert, cfg: RulesConfig) -> Dict[str, str]:
    settings = cfg.alert(alert.name)
    labels = {
        "severity": severity(alert, cfg),
        "signature": alert.signature,
        "problem": alert.problem,
        "component": alert.component,
    }
    labels.update(cfg.labels)
    labels.update(settings.labels)
    return labels


def annotations(alert: Alert, cfg: RulesConfig) -> Dict[str, str]:
    values = param_values(alert, cfg)
    return {
        "summary": alert.summary,
        "description": substitute(alert.description, values),
        "runbook_url": runbook_url(alert, cfg),
    }


def render_rule(alert: Alert, cfg: RulesConfig) -> Optional[Dict[str, Any]]:
    if not cfg.alert(alert.name).enabled:
        return None
    rule: Dict[str, Any] = {"alert": alert.name, "expr": render_expr(alert, cfg) + "\n"}
    if "\n" not in rule["expr"].strip():
        rule["expr"] = rule["expr"].strip()
    fd = for_duration(alert, cfg)
    if fd != "0s":
        rule["for"] = fd
    rule["labels"] = static_labels(alert, cfg)
    rule["annotations"] = annotations(alert, cfg)
    return rule


def group_name(sig: str, cfg: RulesConfig) -> str:
    return f"{cfg.group_prefix}.{sig.lower()}.{SIGNATURES[sig].slug}"


def build_rules(cfg: Optional[RulesConfig] = None) -> Dict[str, Any]:
    cfg = cfg or RulesConfig()
    groups = []
    for sig in SIGNATURE_ORDER:
        rules = [r for r in (render_rule(a, cfg) for a in ALERTS if a.signature == sig) if r]
        if not rules:
            continue
        g: Dict[str, Any] = {"name": group_name(sig, cfg)}
        if cfg.interval:
            g["interval"] = cfg.interval
        g["rules"] = rules
        groups.append(g)
    return {"groups": groups}


def rules_yaml(cfg: Optional[RulesConfig] = None) -> str:
    head = ("# Generated by `sparkwatch rules` from exporter/pack/alerts/: do not edit.\n"
            "# Customise with a rules config (sparkwatch rules --config FILE), see docs/alerts.md.\n")
    return head + dump_yaml(build_rules(cfg))


# --------------------------------------------------------------------------
# promtool tests: every alert's war story and its healthy series


def _replay_group(alert: Alert, replay: Replay, cfg: RulesConfig, kind: str) -> Dict[str, Any]:
    cases: List[Dict[str, Any]] = []
    for t in replay.quiet:
        cases.append({"eval_time": t, "alertname": alert.name, "exp_alerts": []})
    if replay.fires:
        exp = []
        for lbl in replay.labels:
            labels = dict(lbl)
            labels.update(static_labels(alert, cfg))
            ann = annotations(alert, cfg)
            ann["description"] = render_description_labels(ann["description"], labels)
            exp.append({"exp_labels": labels, "exp_annotations": ann})
        cases.append({"eval_time": replay.fires, "alertname": alert.name, "exp_alerts": exp})
    return {
        "name": f"{alert.name} {kind}: {replay.name}",
        "interval": replay.interval,
        "input_series": [{"series": s, "values": v} for s, v in replay.series],
        "alert_rule_test": cases,
    }


def build_tests(rule_file: str = "../sparkwatch.rules.yml", cfg: Optional[RulesConfig] = None) -> Dict[str, Any]:
    cfg = cfg or RulesConfig()
    tests = []
    for a in ALERTS:
        if not cfg.alert(a.name).enabled:
            continue
        tests.append(_replay_group(a, a.story, cfg, "war story"))
        for h in a.healthy:
            tests.append(_replay_group(a, h, cfg, "healthy"))
    return {"rule_files": [rule_file], "evaluation_interval": "1m", "tests": tests}


def tests_yaml(rule_file: str = "../sparkwatch.rules.yml", cfg: Optional[RulesConfig] = None) -> str:
    head = ("# Generated from exporter/pack/alerts/ (each alert's war story and healthy series): do not edit.\n"
            "# Run: promtool test rules alerts/tests/sparkwatch.rules.test.yml\n")
    return head + dump_yaml(build_tests(rule_file, cfg))
