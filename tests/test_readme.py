"""The README and docs/ are what users follow: keep them true."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sparkwatch import docs
from sparkwatch.config import parse_config

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
DOCS = ROOT / "docs"
METRICS = (DOCS / "metrics.md").read_text()
CONFIGURATION = (DOCS / "configuration.md").read_text()


def test_metrics_reference_matches_the_code():
    p = subprocess.run([sys.executable, "-m", "sparkwatch.docs", "--check"], cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    # and every declared metric is in it
    for name in docs.catalog():
        if docs.catalog()[name].source != "test":
            assert f"`{name}`" in METRICS, name


def test_the_two_commands_are_there_and_ci_runs_the_test_command():
    assert "python3 -m venv .venv && .venv/bin/pip install . && .venv/bin/sparkwatch" in README
    assert "\n    ./scripts/test\n" in README
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^exec \./scripts/test\s*$", ci, re.M)


def _yaml_blocks_after(text: str, heading: str):
    part = text.split(heading, 1)[1]
    return re.findall(r"```yaml\n(.*?)```", part, re.S)


def test_configuration_example_is_valid(tmp_path):
    block = _yaml_blocks_after(CONFIGURATION, "## The configuration file")[0]
    # the example names files that exist on a real host; make them exist here
    for path in set(re.findall(r"(/etc/[\w./-]+|/var/run/[\w./-]+)", block)):
        f = tmp_path / path.strip("/").replace("/", "_")
        f.write_text("x\n")
        block = block.replace(path, str(f))
    cfg = parse_config(yaml.safe_load(block), "docs/configuration.md example")
    assert cfg.spark[0].name == "streaming-prod"
    assert cfg.exporter.probe.allows("http://spark-3.internal:4040")


def test_minimal_configuration_in_the_readme_is_valid_and_joins_livy_on_one_process_name():
    block = _yaml_blocks_after(README, "## A minimal configuration")[0]
    cfg = parse_config(yaml.safe_load(block), "README minimal configuration")
    assert cfg.spark and cfg.livy and cfg.zookeeper and cfg.jvm
    assert cfg.livy[0].process == cfg.zookeeper[0].livy_state_store.process == cfg.jvm[0].name


def test_the_scripts_contributing_documents_exist_and_are_executable():
    contributing = (ROOT / "CONTRIBUTING.md").read_text()
    for script in ("scripts/test", "scripts/test-fast", "scripts/generate"):
        assert (ROOT / script).is_file() and (ROOT / script).stat().st_mode & 0o111, script
        assert f"./{script}" in contributing, script


# --------------------------------------------------------------------------
# Relative links in the README, CONTRIBUTING.md and docs/ resolve

DOC_FILES = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted(DOCS.glob("*.md"))]
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")


def _outside_code(text: str) -> str:
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "", text)


def _anchors(path: Path) -> set:
    """GitHub's heading anchors of a Markdown file."""
    out, seen = set(), {}
    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.S | re.M)
    for m in re.finditer(r"^#{1,6} +(.+?) *#*$", text, re.M):
        slug = re.sub(r"[^\w\- ]", "", m.group(1).lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


@pytest.mark.parametrize("path", DOC_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(path):
    for target in LINK.findall(_outside_code(path.read_text())):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        file, _, anchor = target.partition("#")
        dest = (path.parent / file).resolve() if file else path
        assert dest.exists(), f"{path.relative_to(ROOT)}: broken link {target}"
        if anchor and dest.suffix == ".md":
            assert anchor in _anchors(dest), f"{path.relative_to(ROOT)}: no heading for {target}"
