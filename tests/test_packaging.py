"""Dockerfile (hadolint, shape) and the wheel the image is built from."""

import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from sparkwatch.cli import DEFAULT_LISTEN

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
        rel = "sparkwatch/" + src.relative_to(ROOT / "exporter").as_posix()
        assert rel in names, f"{rel} (from {src.relative_to(ROOT)}) is missing from the wheel"
    # the import package is sparkwatch: nothing else at the top level (PyPI's unrelated
    # distribution `exporter` would be overwritten by, or overwrite, a package of that name)
    tops = {n.split("/", 1)[0] for n in names if not n.split("/", 1)[0].endswith((".dist-info", ".data"))}
    assert tops == {"sparkwatch"}, tops
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "sparkwatch = sparkwatch.cli:main" in zipfile.ZipFile(wheel).read(entry).decode()


def _dockerfile_exec_form(instruction: str) -> list:
    import json

    m = re.search(rf"^{instruction}\s+(\[.*\])\s*$", (ROOT / "Dockerfile").read_text(), re.M)
    assert m, f"{instruction} in exec form"
    return json.loads(m.group(1))


@pytest.mark.slow
def test_the_images_wheels_install_into_a_fresh_venv_and_start_as_the_entrypoint(tmp_path):
    """What the image does, without docker: the build stage's `pip wheel` (sparkwatch and
    every dependency), the run stage's `pip install --no-index` into a fresh environment,
    then ENTRYPOINT + CMD as the image's user, from /, with nothing of this checkout on the
    path; the HEALTHCHECK command must pass against it."""
    import os
    import shutil
    import tempfile

    import requests

    from testbed.exporter import wait_until_healthy
    from testbed.procs import free_port, stop_process_group

    text = (ROOT / "Dockerfile").read_text()
    assert "pip wheel --no-cache-dir --wheel-dir /wheels ." in text
    assert "pip install --no-cache-dir --no-index /wheels/*.whl" in text
    work = Path(tempfile.mkdtemp(prefix="sparkwatch-image-", dir="/var/tmp"))
    try:
        work.chmod(0o755)
        wheels, venv = work / "wheels", work / "venv"
        r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--disable-pip-version-check",
                            "--wheel-dir", str(wheels), str(ROOT)], capture_output=True, text=True, timeout=900)
        assert r.returncode == 0, r.stdout + r.stderr
        assert any(p.name.startswith("sparkwatch-") for p in wheels.glob("*.whl"))
        user = []
        if os.geteuid() == 0:  # the image's USER
            uid = re.findall(r"^USER\s+(\S+)", text, re.M)[-1]
            user = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]
        # the interpreter of the image: this Python's version, installed where the image's user may
        # run it (a Python under /root is not); the wheels are built for this version
        version = "python%d.%d" % sys.version_info[:2]
        probe = "import sys; print(sys.version_info[:2] == (%d, %d) and sys.base_prefix)" % sys.version_info[:2]
        for base in (f"/usr/bin/{version}", f"/usr/local/bin/{version}", getattr(sys, "_base_executable", "")):
            if not os.path.isfile(base):
                continue
            r = subprocess.run(user + [base, "-c", probe], capture_output=True, text=True)
            prefix = r.stdout.strip()
            if r.returncode == 0 and prefix.startswith("/") and os.path.realpath(base).startswith(prefix + "/"):
                break  # this very interpreter ran, as the image's user
        else:
            pytest.skip(f"no {version} that the image's user may run")
        r = subprocess.run([base, "-m", "venv", str(venv)], capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stdout + r.stderr
        r = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                            "--no-cache-dir", "--no-index", *map(str, sorted(wheels.glob("*.whl")))],
                           capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stdout + r.stderr
        for p in [work, *work.rglob("*")]:
            if p.is_dir() and not p.is_symlink():
                p.chmod(0o755)
        env = {"PATH": f"{venv}/bin:/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1"}
        r = subprocess.run(user + ["python", "-c", "import sparkwatch; print(sparkwatch.__file__)"], env=env, cwd="/",
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and r.stdout.startswith(str(venv)), r.stdout + r.stderr
        # the DaemonSet's configuration passes the installed check-config
        node = work / "node.yml"
        from sparkwatch.pack.deploy import node_config

        node.write_text(node_config())
        node.chmod(0o644)
        r = subprocess.run(user + ["sparkwatch", "check-config", str(node)], env=env, cwd="/", capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
        port = free_port()
        default_port = DEFAULT_LISTEN.rsplit(":", 1)[1]
        cmd = _dockerfile_exec_form("ENTRYPOINT") + [a.replace(f":{default_port}", f":{port}")
                                                     for a in _dockerfile_exec_form("CMD")]
        p = subprocess.Popen(user + cmd, env=env, cwd="/", stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             text=True, start_new_session=True)
        try:
            wait_until_healthy(f"http://127.0.0.1:{port}", p, output=p.stderr.read)
            assert "sparkwatch_target_up" in requests.get(f"http://127.0.0.1:{port}/metrics", timeout=60).text
            health = re.search(r"^HEALTHCHECK .*?CMD\s+(\[.*\])\s*$", text, re.M)
            import json

            check = [a.replace(f":{default_port}/", f":{port}/") for a in json.loads(health.group(1))]
            r = subprocess.run(user + check, env=env, cwd="/", capture_output=True, text=True, timeout=30)
            assert r.returncode == 0, r.stdout + r.stderr
        finally:
            stop_process_group(p, grace=10)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_every_sub_package_is_listed_in_pyproject():
    """pyproject.toml maps the folder exporter/ to the import package sparkwatch and lists
    every sub-package: a folder with an __init__.py that is not listed would be left out of
    the wheel (and of the image) while the editable install of a developer still finds it."""
    import tomllib

    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert cfg["package-dir"] == {"sparkwatch": "exporter"}
    folders = {".".join(("sparkwatch",) + f.parent.relative_to(ROOT / "exporter").parts)
               for f in (ROOT / "exporter").rglob("__init__.py")}
    assert set(cfg["packages"]) == folders
