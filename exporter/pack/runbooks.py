"""The runbooks: one Markdown page per alert (what the signal means, the rule,
how to confirm it, what to do, the war story) and their index."""

from __future__ import annotations

from typing import Optional

from .alerts import ALERTS
from .model import Alert
from .promql import substitute
from .rules import param_values, render_expr
from .rulesconfig import RulesConfig
from .signatures import SIGNATURE_ORDER, SIGNATURES

RUNBOOK_DIR = "alerts/runbooks"


def runbook_path(alert: Alert) -> str:
    """The runbook's path in the repository (the generator writes it there; the doctor names it)."""
    return f"{RUNBOOK_DIR}/{alert.name}.md"


def runbook(alert: Alert, cfg: Optional[RulesConfig] = None) -> str:
    cfg = cfg or RulesConfig()
    sig = SIGNATURES[alert.signature]
    values = param_values(alert, cfg)
    sig_title = f"{sig.id}: {sig.title}" if sig.id.startswith("S") else sig.title
    lines = [
        f"# {alert.name}",
        "",
        f"**Severity:** {alert.severity} ({'pages' if alert.severity == 'critical' else 'opens a ticket'}) · "
        f"**Signature:** {sig_title} · **Problem:** `{alert.problem}`",
        "",
        f"> {alert.summary}",
        "",
        "<!-- Generated from exporter/pack/alerts/ and exporter/pack/signatures.py: edit those, "
        "then run ./scripts/generate. -->",
        "",
        "## What the signal means",
        "",
        substitute(alert.meaning, values),
        "",
        "The rule (default settings):",
        "",
        "```promql",
        render_expr(alert, cfg),
        "```",
        "",
        f"for `{values['for_duration']}`." if values["for_duration"] != "0s" else "(no `for:`).",
        "",
    ]
    if alert.params:
        lines += ["Parameters (set them under `alerts.%s.params` of the rules config):" % alert.name, ""]
        lines += ["| parameter | default | meaning |", "|---|---|---|"]
        for name, p in alert.params.items():
            cell = str(p.default).replace("|", "\\|")
            lines.append(f"| `{name}` | `{cell}` | {p.help.replace('|', '/')} |")
        lines.append("")
    lines += ["## How to confirm it", ""]
    lines += [f"{i}. {step}" for i, step in enumerate(alert.confirm, 1)]
    lines += ["", "## What to do", "", alert.action, ""]
    lines += [f"## The war story: {sig_title}", "", f"From: {sig.seed}.", "", sig.story, "",
              f"**Signal.** {sig.signal}", "", f"**The fix the war story found.** {sig.fix}", ""]
    st = alert.story
    timing = f" (quiet at {', '.join(st.quiet)}, firing at {st.fires}"
    if st.failure:
        timing += f"; the failure, {st.failure_is}, comes at {st.failure}"
    timing += ")"
    lines += ["## Replayed in the tests", "",
              f"- fires on: {st.name}{timing};",
              *[f"- stays quiet on: {h.name};" for h in alert.healthy],
              "", "See `alerts/tests/sparkwatch.rules.test.yml`.", ""]
    related = [a.name for a in ALERTS if a.problem == alert.problem and a.name != alert.name]
    if related:
        lines += ["## Related alerts", ""] + [f"- [{n}]({n}.md)" for n in related] + [""]
    return "\n".join(lines)


def runbook_index() -> str:
    lines = ["# sparkwatch runbooks", "",
             "<!-- Generated from exporter/pack: do not edit. -->", "",
             "| alert | severity | signature | summary |", "|---|---|---|---|"]
    for sig in SIGNATURE_ORDER:
        for a in ALERTS:
            if a.signature == sig:
                lines.append(f"| [{a.name}]({a.name}.md) | {a.severity} | {sig} | {a.summary} |")
    return "\n".join(lines) + "\n"
