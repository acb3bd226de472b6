"""The example Alertmanager configuration: critical alerts page, warnings open
a ticket, and the inhibitions between the pack's alerts."""

from __future__ import annotations

from typing import Any, Dict

from .alerts import ALERTS
from .rules import dump_yaml

ALERTMANAGER_FILE = "alerts/alertmanager.example.yml"


def build_alertmanager() -> Dict[str, Any]:
    target_down = sorted(a.name for a in ALERTS if a.problem == "target-down")
    exporter_down = [a.name for a in ALERTS if a.problem == "exporter-down"]
    return {
        "global": {"resolve_timeout": "5m"},
        "route": {
            "receiver": "ticket",
            "group_by": ["alertname", "job", "instance", "target"],
            "group_wait": "30s",
            "group_interval": "5m",
            "repeat_interval": "4h",
            "routes": [
                {"receiver": "pager", "matchers": ['severity="critical"'], "repeat_interval": "1h"},
                {"receiver": "ticket", "matchers": ['severity="warning"'], "repeat_interval": "24h"},
            ],
        },
        "inhibit_rules": [
            {
                # the exporter itself is down: every alert about its targets is blind or stale
                "source_matchers": [f'alertname=~"{"|".join(exporter_down)}"'],
                "target_matchers": [f'alertname!~"{"|".join(exporter_down)}"'],
                "equal": ["job", "instance"],
            },
            {
                # a target is down: the alerts that read that target (same component, same target) are silenced
                "source_matchers": [f'alertname=~"{"|".join(target_down)}"'],
                "target_matchers": ['problem!="target-down"'],
                "equal": ["job", "instance", "component", "target"],
            },
            {
                # the critical alert of a problem silences the warnings of the same problem
                "source_matchers": ['severity="critical"'],
                "target_matchers": ['severity="warning"'],
                "equal": ["problem", "job", "instance", "target", "process", "pid", "app_id"],
            },
        ],
        "receivers": [
            {"name": "pager", "webhook_configs": [
                {"url": "http://pager.example.com:8080/alertmanager", "send_resolved": True}]},
            {"name": "ticket", "webhook_configs": [
                {"url": "http://tickets.example.com:8080/alertmanager", "send_resolved": False}]},
        ],
    }


def alertmanager_yaml() -> str:
    head = ("# Example Alertmanager configuration for the sparkwatch rules (generated from exporter/pack).\n"
            "# severity=critical pages (receiver 'pager'); severity=warning opens a ticket (receiver 'ticket').\n"
            "# Replace the webhook URLs with your pager (PagerDuty, Opsgenie...) and ticket system.\n")
    return head + dump_yaml(build_alertmanager())
