import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # testbed, lab, tests.helpers

from testbed.jvm import compile_apps, have_java  # noqa: E402


@pytest.fixture(scope="session")
def jvm_classes() -> Iterator[Path]:
    """testbed/jvmapps compiled, in a world-readable directory of its own (not under
    pytest's basetemp: pytest resets that to 0700, and other pytest sessions of
    the same user share it)."""
    if not have_java():
        pytest.skip("needs a JDK")
    d = Path(tempfile.mkdtemp(prefix="sparkwatch-jvmapps-"))
    try:
        yield compile_apps(d)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="session")
def pki(tmp_path_factory) -> Path:
    """A directory of keys and certificates made by openssl (``<name>.pem``, ``<name>.key``):
    ``ca`` signs ``server`` (IP 127.0.0.1), ``client`` and ``named-client`` (DNS
    prometheus.internal); ``rogue-ca`` signs ``rogue-client``. Read-only for the tests."""
    if not shutil.which("openssl"):
        pytest.skip("needs openssl")
    d = tmp_path_factory.mktemp("pki")
    for ca in ("ca", "rogue-ca"):
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN=sparkwatch {ca}",
                 "-keyout", f"{ca}.key", "-out", f"{ca}.pem", cwd=d)
    (d / "server.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    (d / "named-client.cnf").write_text("subjectAltName=DNS:prometheus.internal\n")
    for name, ca, ext in (("server", "ca", ["-extfile", "server.cnf"]), ("client", "ca", []),
                          ("named-client", "ca", ["-extfile", "named-client.cnf"]), ("rogue-client", "rogue-ca", [])):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout", f"{name}.key",
                 "-out", f"{name}.csr", cwd=d)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
                 "-CAcreateserial", "-days", "2", "-out", f"{name}.pem", *ext, cwd=d)
    return d
