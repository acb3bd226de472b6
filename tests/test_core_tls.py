"""TLS settings of HTTP targets, against a real HTTPS server with its own CA (the ``pki``
fixture of conftest.py)."""

import ssl

from testbed.exporter import running_exporter, scrape, value
from testbed.faulty_http import faulty_server


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
