"""Dockerfile (hadolint, shape) and the wheel the image is built from."""

import re
import subprocess
import sys
import zipfile
from pathlib import Path

from exporter.cli import DEFAULT_LISTEN

ROOT = Path(__file__).resolve().parent.parent
HADOLINT = Path(sys.executable).parent / "hadolint"


def test_hadolint_passes():
    p = subprocess.run([str(HADOLINT), "--no-color", str(ROOT / "Dockerfile")], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr


def test_dockerfile_is_multistage_nonroot_and_exposes_the_default_port():
    text = (ROOT / "Dockerfile").read_text()
    assert len(re.findall(r"^FROM ", text, re.M)) >= 2
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users and users[-1] not in ("root", "0")
    port = DEFAULT_LISTEN.rsplit(":", 1)[1]
    assert re.search(rf"^EXPOSE\s+{port}\b", text, re.M)
    assert f":{port}" in text.split("ENTRYPOINT", 1)[1]


def test_wheel_contains_every_module_and_the_console_script(tmp_path):
    p = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    wheel = next(tmp_path.glob("sparkwatch-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for src in (ROOT / "exporter").rglob("*.py"):
        rel = src.relative_to(ROOT).as_posix()
        assert rel in names, f"{rel} is missing from the wheel"
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "sparkwatch = exporter.cli:main" in zipfile.ZipFile(wheel).read(entry).decode()
