"""The alerting pack: one definition of every signature, alert and dashboard
panel, and the generators of the Prometheus rules, their promtool tests, the
runbooks, the Alertmanager example and the Grafana dashboards.

Regenerate the committed files with ``python -m exporter.pack`` (CI fails when
they drift from the definitions)."""
