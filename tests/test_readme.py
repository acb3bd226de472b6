"""The README is what users follow: keep it true."""

import re
import subprocess
import sys
from pathlib import Path

import yaml

from exporter import docs
from exporter.config import parse_config

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_metrics_reference_matches_the_code():
    p = subprocess.run([sys.executable, "-m", "exporter.docs", "--check"], cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    # and every declared metric is in it
    for name in docs.catalog():
        if docs.catalog()[name].source != "test":
            assert f"`{name}`" in README, name


def test_the_two_commands_are_there_and_ci_runs_the_test_command():
    assert "python3 -m venv .venv && .venv/bin/pip install . && .venv/bin/sparkwatch" in README
    assert "\n    ./scripts/test\n" in README
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^exec \./scripts/test\s*$", ci, re.M)


def _yaml_blocks_after(heading: str):
    part = README.split(heading, 1)[1]
    return re.findall(r"```yaml\n(.*?)```", part, re.S)


def test_configuration_example_is_valid(tmp_path):
    block = _yaml_blocks_after("### Configuration")[0]
    # the example names files that exist on a real host; make them exist here
    for path in set(re.findall(r"(/etc/[\w./-]+|/var/run/[\w./-]+)", block)):
        f = tmp_path / path.strip("/").replace("/", "_")
        f.write_text("x\n")
        block = block.replace(path, str(f))
    cfg = parse_config(yaml.safe_load(block), "README example")
    assert cfg.spark[0].name == "streaming-prod"
    assert cfg.exporter.probe.allows("http://spark-3.internal:4040")
