"""Write (or compare) every generated file of the pack."""

from __future__ import annotations

from pathlib import Path
from typing import Dict

from . import alertmanager, rules, runbooks
from .alerts import ALERTS


def generated_files() -> Dict[str, str]:
    """Repository-relative path -> content of every generated file."""
    from . import dashboards

    files = {
        rules.RULES_FILE: rules.rules_yaml(),
        rules.TESTS_FILE: rules.tests_yaml(),
        alertmanager.ALERTMANAGER_FILE: alertmanager.alertmanager_yaml(),
        f"{runbooks.RUNBOOK_DIR}/README.md": runbooks.runbook_index(),
    }
    for a in ALERTS:
        files[runbooks.runbook_path(a)] = runbooks.runbook(a)
    for name, content in dashboards.dashboard_files().items():
        files[f"dashboards/{name}"] = content
    from . import deploy

    for name, content in deploy.kubernetes_files().items():
        files[f"{deploy.KUBERNETES_DIR}/{name}"] = content
    return files


def write_all(root: Path) -> None:
    """Write every generated file under ``root`` (the checkout): what
    ``python -m sparkwatch.pack`` and ``./scripts/generate`` do. The files are never
    edited by hand; ``tests/test_pack.py`` fails when they differ (:func:`drift`)."""
    for rel, content in generated_files().items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(content)


def drift(root: Path) -> Dict[str, str]:
    """Files whose committed content differs from what the definitions generate."""
    out = {}
    for rel, content in generated_files().items():
        p = root / rel
        if not p.is_file():
            out[rel] = "missing"
        elif p.read_text() != content:
            out[rel] = "differs"
    return out
