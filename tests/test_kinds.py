"""One table of target kinds (exporter/kinds.py): the collectors registry, the
pack's selector injection, the rules configuration's per-prefix selectors, the
target-down alerts and the sections of the metrics reference all come from it."""

import json
import subprocess
import sys
import textwrap

import pytest

from sparkwatch import kinds
from sparkwatch.collectors import COLLECTOR_KINDS
from sparkwatch.docs import SECTIONS, render
from sparkwatch.pack.alerts import BY_NAME, TARGET_KINDS
from sparkwatch.pack.promql import PREFIXES, inject, metrics_used
from sparkwatch.pack.rulesconfig import Selectors, parse_rules_config

NAMES = [k.name for k in kinds.KINDS]
SOURCES = [kinds.EXPORTER.name] + NAMES


def test_the_registry_is_the_table_in_its_order():
    assert list(COLLECTOR_KINDS) == NAMES
    assert {name: cls.kind for name, cls in COLLECTOR_KINDS.items()} == {n: n for n in NAMES}


def test_everything_that_lists_the_kinds_lists_the_table():
    assert list(PREFIXES) == SOURCES
    assert list(Selectors.model_fields) == SOURCES
    assert [name for name, _ in SECTIONS] == SOURCES
    assert [kind for kind, _, _, _ in TARGET_KINDS] == NAMES


@pytest.mark.parametrize("prefix", SOURCES)
def test_every_prefix_gets_its_selectors(prefix):
    expr = f'rate({prefix}_x_total[5m]) > on(target) {prefix}_y{{a="b"}}'
    assert metrics_used(expr) == {f"{prefix}_x_total", f"{prefix}_y"}
    assert inject(expr, {prefix: 'job="j"'}) == \
        f'rate({prefix}_x_total{{job="j"}}[5m]) > on(target) {prefix}_y{{a="b", job="j"}}'
    assert getattr(parse_rules_config({"selectors": {prefix: 'env="prod"'}}).selectors, prefix) == 'env="prod"'


@pytest.mark.parametrize("kind", kinds.KINDS, ids=NAMES)
def test_every_kind_has_its_target_down_alert_and_its_section(kind):
    alert = BY_NAME[f"{kind.name.capitalize()}TargetDown"]
    assert (alert.component, alert.severity, alert.problem) == (kind.name, kind.down_severity, "target-down")
    assert alert.meaning.startswith(kind.down_meaning)
    assert f"## {kind.title}\n" in render()


def test_a_new_kind_in_the_table_gets_selectors_a_down_alert_and_a_section():
    # a fresh interpreter: one row added to the table before anything derives from it
    code = textwrap.dedent("""
        import json
        from sparkwatch import kinds
        kinds.KINDS += (kinds.Kind("flink", "Flink", "warning", "A Flink JobManager that does not answer."),)
        from sparkwatch.docs import SECTIONS
        from sparkwatch.pack.alerts import BY_NAME
        from sparkwatch.pack.promql import inject
        a = BY_NAME["FlinkTargetDown"]
        print(json.dumps({"injected": inject("flink_jobs_running > 0", {"flink": 'job="j"'}),
                          "alert": [a.component, a.severity, a.expr], "sections": dict(SECTIONS)}))
    """)
    out = json.loads(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout)
    assert out["injected"] == 'flink_jobs_running{job="j"} > 0'
    assert out["alert"] == ["flink", "warning", 'sparkwatch_target_up{kind="flink"} == 0']
    assert out["sections"]["flink"] == "Flink"
