"""The alerting pack: one definition of every signature, alert and dashboard
panel, and the generators of the Prometheus rules, their promtool tests, the
runbooks, the Alertmanager example and the Grafana dashboards.

- ``signatures.py``: S1-S5 (war story, signal, fix);
- ``alerts.py``: every alert (expression with ``$param`` placeholders, its
  parameters, texts, and its war-story and healthy replays);
- ``rulesconfig.py``: the rules configuration (validated, errors name the key);
- ``rules.py``: rules, promtool tests, runbooks, Alertmanager example;
- ``dashboards.py``: the Grafana dashboards.

Regenerate the committed files with ``python -m exporter.pack`` (CI fails when
they drift from the definitions). Rules customised from code (what the
incident lab does to compress days into minutes)::

    from exporter.pack.rules import rules_yaml
    from exporter.pack.rulesconfig import parse_rules_config

    text = rules_yaml(parse_rules_config({
        "time_scale": 0.01, "interval": "1s",
        "alerts": {"LivyFinishedSessionsPilingUp": {"params": {"min_finished": 20}}},
    }))
"""
