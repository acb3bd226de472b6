import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # testbed, lab, tests.helpers

from testbed import zookeeper  # noqa: E402
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


@pytest.fixture(scope="session")
def zk(tmp_path_factory) -> Iterator[zookeeper.ZooKeeperServer]:
    """One real ZooKeeper server for the tests that only read it, holding Livy's state
    stores: ``livy`` with the war story's 40,000 batches (S2), ``small`` with 10 batches
    and an empty interactive store, ``tenant-a/livy2`` (5 batches, 3 interactive sessions:
    a store under a chroot), and ``secure`` (7 batches) that only the digest user ``livy``
    with password ``right`` may read. Tests that stop, pause or write start their own."""
    if not zookeeper.available():
        pytest.skip("Debian zookeeper not installed")
    from kazoo.client import KazooClient
    from kazoo.security import make_digest_acl

    with zookeeper.zookeeper_server(tmp_path_factory.mktemp("zk")) as srv:
        c = KazooClient(hosts=srv.hosts)
        c.start(30)
        try:
            zookeeper.write_livy_store(c, "livy", "batch", 40000)
            zookeeper.write_livy_store(c, "small", "batch", 10)
            zookeeper.write_livy_store(c, "small", "interactive", 0)
            zookeeper.write_livy_store(c, "tenant-a/livy2", "batch", 5)
            zookeeper.write_livy_store(c, "tenant-a/livy2", "interactive", 3)
            c.add_auth("digest", "livy:right")
            zookeeper.write_livy_store(c, "secure", "batch", 7, acl=[make_digest_acl("livy", "right", all=True)])
        finally:
            c.stop()
            c.close()
        yield srv
