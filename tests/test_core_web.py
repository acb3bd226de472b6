"""The HTTP side: landing page, health, probe with its allow-list, auth, secrets, format."""

import logging
import subprocess

import pytest
import requests

from testbed.exporter import running_exporter, scrape, value
from testbed.faulty_http import faulty_server


def test_landing_page_lists_targets_with_status_and_last_error():
    with faulty_server("ok") as good, faulty_server("html") as bad:
        cfg = {"spark": [{"name": "prod-stream", "url": good.url}, {"name": "behind-proxy", "url": bad.url}]}
        with running_exporter(cfg) as (url, _):
            before = requests.get(url + "/", timeout=10).text
            scrape(url)
            page = requests.get(url + "/", timeout=10)
    assert "not scraped yet" in before
    assert page.headers["Content-Type"].startswith("text/html")
    html = page.text
    assert "prod-stream" in html and "behind-proxy" in html and good.url in html
    row = next(l for l in html.splitlines() if "behind-proxy" in l)
    assert ">down<" in row and "expected JSON, got HTML" in row
    row = next(l for l in html.splitlines() if "prod-stream" in l)
    assert ">up<" in row
    assert 'href="/metrics"' in html


def test_health_and_unknown_paths():
    with running_exporter({}) as (url, _):
        assert requests.get(url + "/-/healthy", timeout=5).status_code == 200
        assert requests.get(url + "/nope", timeout=5).status_code == 404
        assert requests.post(url + "/metrics", timeout=5).status_code == 405


def _raw_answer(port: int, request: bytes) -> bytes:
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(request)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data


def test_the_server_header_names_sparkwatch_not_python():
    from sparkwatch import __version__

    with running_exporter({}) as (url, _):
        port = int(url.rsplit(":", 1)[1])
        answers = [requests.get(url + path, timeout=5) for path in ("/metrics", "/", "/-/healthy", "/nope")]
        servers = [r.headers.get("Server") for r in answers]
        # an answer of the HTTP layer itself (a request it refuses: more than 100 headers)
        bad = _raw_answer(port, b"GET / HTTP/1.0\r\n" + b"X-A: b\r\n" * 101 + b"\r\n")
    assert servers == [f"sparkwatch/{__version__}"] * 4, servers
    assert bad.startswith(b"HTTP/1.0 431") and f"\r\nServer: sparkwatch/{__version__}\r\n".encode() in bad, bad
    assert b"Python" not in bad


def test_metrics_with_no_targets_still_has_build_info():
    with running_exporter({}) as (url, _):
        text = scrape(url)
    from sparkwatch import __version__
    assert value(text, "sparkwatch_build_info", version=__version__) == 1


def test_probe_scrapes_only_the_given_target_and_respects_the_allow_list():
    with faulty_server("ok") as good, faulty_server("http500") as other:
        cfg = {"spark": [{"name": "configured", "url": other.url}],
               "exporter": {"probe": {"allowed_targets": [good.url]}}}
        with running_exporter(cfg) as (url, _):
            r = requests.get(url + "/probe", params={"module": "spark", "target": good.url}, timeout=10)
            assert r.status_code == 200
            text = r.text
            assert value(text, "sparkwatch_target_up", kind="spark", target=good.url) == 1
            assert 'target="configured"' not in text  # configured targets are not scraped by a probe
            assert not other.requests
            denied = requests.get(url + "/probe", params={"module": "spark", "target": other.url}, timeout=10)
            assert denied.status_code == 403 and "allowed_targets" in denied.text
            assert not other.requests  # the exporter is no open proxy: nothing was sent
            bad_module = requests.get(url + "/probe", params={"module": "nope", "target": good.url}, timeout=10)
            assert bad_module.status_code == 400 and "spark" in bad_module.text
            no_target = requests.get(url + "/probe", params={"module": "spark"}, timeout=10)
            assert no_target.status_code == 400
            # probed targets show on the landing page too
            assert good.url in requests.get(url + "/", timeout=10).text


def test_probe_is_disabled_without_an_allow_list():
    with faulty_server("ok") as good:
        with running_exporter({}) as (url, _):
            r = requests.get(url + "/probe", params={"module": "spark", "target": good.url}, timeout=10)
        assert r.status_code == 403 and not good.requests


def test_probe_module_settings_apply_and_bad_targets_are_rejected():
    with faulty_server("unauthorized") as srv:
        srv.accept_basic("probe-user", "probe-pass")
        cfg = {"exporter": {"probe": {"allowed_targets": ["http://127.0.0.1:*"], "modules": {
            "spark": {"basic_auth": {"username": "probe-user", "password": "probe-pass"}}}}}}
        with running_exporter(cfg) as (url, _):
            text = requests.get(url + "/probe", params={"module": "spark", "target": srv.url}, timeout=10).text
            assert value(text, "sparkwatch_target_up", target=srv.url) == 1
            r = requests.get(url + "/probe", params={"module": "spark", "target": "file:///etc/passwd"}, timeout=10)
            assert r.status_code in (400, 403), r.status_code  # not an allowed target, not an HTTP URL


@pytest.mark.parametrize("how", ["basic_auth", "password_file", "bearer_token_file", "bearer_token_env"])
def test_auth_is_sent_and_secrets_never_leak(tmp_path, monkeypatch, caplog, how):
    secret = "Zq9-very-secret-value"
    caplog.set_level(logging.DEBUG)
    with faulty_server("unauthorized") as srv, faulty_server("unauthorized") as wrong:
        if how.startswith("bearer"):
            srv.accept_bearer(secret)
        else:
            srv.accept_basic("spark", secret)
        if how == "basic_auth":
            auth = {"basic_auth": {"username": "spark", "password": secret}}
        elif how == "password_file":
            (tmp_path / "pw").write_text(secret + "\n")
            auth = {"basic_auth": {"username": "spark", "password_file": str(tmp_path / "pw")}}
        elif how == "bearer_token_file":
            (tmp_path / "tok").write_text(secret + "\n")
            auth = {"bearer_token_file": str(tmp_path / "tok")}
        else:
            monkeypatch.setenv("SPARKWATCH_TEST_TOKEN", secret)
            auth = {"bearer_token_env": "SPARKWATCH_TEST_TOKEN"}
        cfg = {"spark": [dict(name="ok", url=srv.url, **auth), dict(name="rejected", url=wrong.url, **auth)]}
        with running_exporter(cfg) as (url, _):
            text = scrape(url)
            page = requests.get(url + "/", timeout=10).text
    assert value(text, "sparkwatch_target_up", target="ok") == 1
    assert value(text, "sparkwatch_target_up", target="rejected") == 0
    assert value(text, "sparkwatch_target_scrape_errors_total", target="rejected", reason="auth") == 1
    for where in (text, page, caplog.text):
        assert secret not in where


def test_promtool_check_metrics_accepts_the_output():
    with faulty_server("ok") as good, faulty_server("http500") as bad:
        cfg = {"spark": [{"name": "good", "url": good.url}, {"name": "bad", "url": bad.url}]}
        with running_exporter(cfg) as (url, _):
            scrape(url)
            text = scrape(url)
    p = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "sparkwatch_target_up" in text


def test_openmetrics_is_negotiated():
    with running_exporter({}) as (url, _):
        r = requests.get(url + "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}, timeout=10)
    assert r.headers["Content-Type"].startswith("application/openmetrics-text")
    assert r.text.rstrip().endswith("# EOF")
