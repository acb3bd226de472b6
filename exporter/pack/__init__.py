"""The alerting pack: one definition of every signature, alert and dashboard
panel, and the generators of the Prometheus rules, their promtool tests, the
runbooks, the Alertmanager example and the Grafana dashboards.

- ``signatures.py``: S1-S5 (war story, signal, fix);
- ``alerts/``: every alert (expression with ``$param`` placeholders, its
  parameters, texts, and its war-story and healthy replays), one module per
  signature (``s1_livy.py`` ... ``s5_classes_codecache.py``, ``targets.py``);
- ``expressions.py``: PromQL templates the alerts share (rising floor,
  predicted exhaustion, ...);
- ``model.py``: the shapes of the definitions (Alert, Param, Replay);
- ``promql.py``: durations, ``$param`` substitution, selector injection;
- ``rulesconfig.py``: the rules configuration (validated, errors name the key);
- ``rules.py``: the Prometheus rules and their promtool tests;
- ``runbooks.py``: the runbooks; ``alertmanager.py``: the Alertmanager example;
- ``dashboards.py``: the Grafana dashboards;
- ``generate.py``: every generated file (``python -m sparkwatch.pack`` writes them).

Regenerate the committed files with ``python -m sparkwatch.pack`` (CI fails when
they drift from the definitions). Rules customised from code (what the
incident lab does to compress days into minutes)::

    from sparkwatch.pack.rules import rules_yaml
    from sparkwatch.pack.rulesconfig import parse_rules_config

    text = rules_yaml(parse_rules_config({
        "time_scale": 0.01, "interval": "1s",
        "alerts": {"LivyFinishedSessionsPilingUp": {"params": {"min_finished": 20}}},
    }))
"""
