"""TLS settings of HTTP targets, against a real HTTPS server with its own CA."""

import ssl
import subprocess

import pytest

from testbed.exporter import running_exporter, scrape, value
from testbed.faulty_http import faulty_server


def _openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=sparkwatch test CA",
             "-keyout", "ca.key", "-out", "ca.pem", cwd=d)
    (d / "san.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    for name, ext in (("server", ["-extfile", "san.cnf"]), ("client", [])):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout", f"{name}.key",
                 "-out", f"{name}.csr", cwd=d)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                 "-days", "2", "-out", f"{name}.pem", *ext, cwd=d)
    return d


def _server_context(pki, require_client_cert=False):
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(pki / "server.pem", pki / "server.key")
    if require_client_cert:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(pki / "ca.pem")
    return ctx


def test_tls_verification(pki):
    with faulty_server("ok", _server_context(pki)) as srv:
        cfg = {"spark": [
            {"name": "unknown-ca", "url": srv.url},
            {"name": "with-ca", "url": srv.url, "tls_config": {"ca_file": str(pki / "ca.pem")}},
            {"name": "no-verify", "url": srv.url, "tls_config": {"insecure_skip_verify": True}},
        ]}
        with running_exporter(cfg) as (url, _):
            text = scrape(url)
    assert value(text, "sparkwatch_target_up", target="unknown-ca") == 0
    assert value(text, "sparkwatch_target_scrape_errors_total", target="unknown-ca", reason="tls") == 1
    assert value(text, "sparkwatch_target_up", target="with-ca") == 1
    assert value(text, "sparkwatch_target_up", target="no-verify") == 1


def test_client_certificate(pki):
    with faulty_server("ok", _server_context(pki, require_client_cert=True)) as srv:
        ca = str(pki / "ca.pem")
        cfg = {"spark": [
            {"name": "no-cert", "url": srv.url, "tls_config": {"ca_file": ca}},
            {"name": "cert", "url": srv.url, "tls_config": {
                "ca_file": ca, "cert_file": str(pki / "client.pem"), "key_file": str(pki / "client.key")}},
        ]}
        with running_exporter(cfg) as (url, _):
            text = scrape(url)
    assert value(text, "sparkwatch_target_up", target="no-cert") == 0
    assert value(text, "sparkwatch_target_up", target="cert") == 1
