"""The doctor's report: plain text for a terminal or a ticket, or JSON.

Text: at most 80 columns, worst finding first, each with its severity,
signature, target and subject, the verdict, the numbers, the fix and the
runbook's path; then the targets read. Colour only on a terminal (never when
the output is piped into a file or a ticket, nor with ``NO_COLOR`` set).
"""

from __future__ import annotations

import json
import textwrap
import time
from typing import List, Optional

from ..collector import safe_text
from .findings import Finding
from .reading import Reading

WIDTH = 80
COLOURS = {"critical": "\033[1;31m", "warning": "\033[1;33m", "info": "\033[36m"}
RESET = "\033[0m"


def to_json(findings: List[Finding], reading: Reading) -> str:
    """The findings and the targets of the last reading, as JSON."""
    return json.dumps({
        "findings": [f.as_dict() for f in findings],
        "targets": [{"kind": t.kind, "name": t.name, "up": t.up, "error": t.error or None} for t in reading.targets],
    }, indent=2)


def _printable(text) -> str:
    """What a target, an application or Prometheus chose (names, error texts) reaches a
    terminal only as printable characters: an escape sequence cannot move the cursor,
    clear the screen or recolour the verdict."""
    return safe_text(text, 100_000)


def _wrap(label: str, text: str, indent: int = 2) -> List[str]:
    head = " " * indent + label
    return textwrap.wrap(_printable(text), WIDTH, initial_indent=head, subsequent_indent=" " * len(head),
                         break_long_words=True, break_on_hyphens=False) or [head.rstrip()]


def _evidence(ev: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in ev.items())


def to_text(findings: List[Finding], readings: List[Reading], colour: bool = False,
            notes: Optional[List[str]] = None, history=None) -> str:
    """The report for a terminal or a ticket: at most 80 columns, worst first, then the targets
    and the ``notes``; ``history``: what Prometheus said (``--prometheus``), in the head."""
    last = readings[-1]
    down = sum(1 for t in last.targets if not t.up)
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(last.wall))
    counts = {s: sum(1 for f in findings if f.severity == s) for s in ("critical", "warning", "info")}
    lines = []
    how = "one reading" if len(readings) == 1 else \
        f"two readings {readings[-1].monotonic - readings[0].monotonic:.0f}s apart"
    lines.append(f"sparkwatch doctor, {when}")
    lines += _wrap("", f"Read {len(last.targets)} targets ({down} down), {how}.", 0)
    if history is not None:
        if history.error:
            said = "could not be read"
        else:
            states = [a.state for a in history.active]
            said = (f"{states.count('firing')} of the pack's alerts firing, {states.count('pending')} pending "
                    "for these targets")
        lines += _wrap("", f"Prometheus ({history.url}): {said}.", 0)
    verdict = ", ".join(f"{n} {s}" for s, n in counts.items() if n) or "nothing found"
    lines += _wrap("", f"Verdict: {verdict}.", 0)
    for f in findings:
        lines.append("")
        sev = f.severity.upper()
        if colour:
            sev = COLOURS[f.severity] + sev + RESET
        head = f"{sev} {f.signature} | {_printable(f.target)} | {_printable(f.subject)}"
        lines += textwrap.wrap(head, WIDTH + (len(sev) - len(f.severity)), subsequent_indent="  ",
                               break_on_hyphens=False)
        lines += _wrap("", f.summary)
        if f.evidence:
            lines += _wrap("numbers: ", _evidence(f.evidence))
        if f.fix:
            lines += _wrap("fix: ", f.fix)
        if f.runbook:
            lines += _wrap("runbook: ", f.runbook)
    lines.append("")
    lines.append("Targets:")
    name_w = min(30, max([len(t.name) for t in last.targets] + [4]))
    for t in last.targets:
        state = "up" if t.up else "DOWN"
        row = f"  {state:<4}  {t.kind:<9}  {_printable(t.name)[:name_w]:<{name_w}}"
        lines.append(row.rstrip())
        if t.error:
            lines += textwrap.wrap(_printable(t.error), WIDTH, initial_indent=" " * 8, subsequent_indent=" " * 8,
                                   break_on_hyphens=False)
    for note in notes or []:
        lines.append("")
        lines += _wrap("", note, 0)
    return "\n".join(lines) + "\n"
