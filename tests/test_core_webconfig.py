"""--web.config.file: TLS, client certificates and basic authentication on the
exporter's own endpoints (exporter-toolkit's format), against real TLS with a
CA made by openssl."""

import socket
import ssl
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import bcrypt
import pytest
import requests
import yaml

from sparkwatch.cli import main
from sparkwatch.config import ConfigError, parse_config
from sparkwatch.web import App, serve
from sparkwatch.webconfig import BasicAuth, load_web_config, parse_web_config
from testbed.exporter import wait_until_healthy
from testbed.procs import free_port, stop_process_group

ROOT = Path(__file__).resolve().parent.parent
# pki (ca, server, client, named-client, rogue-ca, rogue-client): the fixture of conftest.py


def _hash(password: str, prefix: str = "$2b$") -> str:
    h = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
    return prefix + h[4:]


def _web_config(tmp_path, data: dict) -> Path:
    f = tmp_path / "web.yml"
    f.write_text(yaml.safe_dump(data))
    return f


@contextmanager
def _exporter(web_config_file: Path):
    """The real exporter (no targets) in-process, behind ``web_config_file``."""
    app = App(parse_config({}, "test"))
    httpd = serve(app, "127.0.0.1:0", web_config=load_web_config(web_config_file))
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    scheme = "https" if httpd.ssl_context is not None else "http"
    try:
        yield f"{scheme}://127.0.0.1:{httpd.server_port}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        app.close()
        t.join(10)


def _get(url, **kw):
    kw.setdefault("timeout", 10)
    return requests.get(url, **kw)


def _refused(url, **kw) -> bool:
    try:
        _get(url, **kw)
    except requests.exceptions.ConnectionError:  # SSLError is one too
        return True
    return False


def _tls(pki, client_auth_type, **more):
    tls = {"cert_file": str(pki / "server.pem"), "key_file": str(pki / "server.key"),
           "client_auth_type": client_auth_type}
    if client_auth_type != "NoClientCert":
        tls["client_ca_file"] = str(pki / "ca.pem")
    tls.update(more)
    return tls


def _cert(pki, name):
    return (str(pki / f"{name}.pem"), str(pki / f"{name}.key"))


# ---------------------------------------------------------------------------- TLS


def test_tls_with_required_and_verified_client_certificates(pki, tmp_path):
    web = _web_config(tmp_path, {"tls_server_config": _tls(pki, "RequireAndVerifyClientCert")})
    ca = str(pki / "ca.pem")
    with _exporter(web) as url:
        assert url.startswith("https://")
        r = _get(url + "/metrics", verify=ca, cert=_cert(pki, "client"))
        assert r.status_code == 200 and "sparkwatch_build_info" in r.text
        assert _refused(url + "/metrics", verify=ca)                                # no certificate
        assert _refused(url + "/-/healthy", verify=ca)                              # TLS applies to every path
        assert _refused(url + "/metrics", verify=ca, cert=_cert(pki, "rogue-client"))  # another CA's
        assert _refused(url + "/metrics", verify=str(pki / "rogue-ca.pem"), cert=_cert(pki, "client"))
        assert _refused(url.replace("https:", "http:") + "/metrics")                # plain HTTP
        # a client that connects and never starts the handshake holds nothing up
        with socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), timeout=10):
            t0 = time.monotonic()
            assert _get(url + "/-/healthy", verify=ca, cert=_cert(pki, "client")).status_code == 200
            assert time.monotonic() - t0 < 3


def test_tls_verify_client_cert_if_given(pki, tmp_path):
    web = _web_config(tmp_path, {"tls_server_config": _tls(pki, "VerifyClientCertIfGiven", min_version="TLS13")})
    ca = str(pki / "ca.pem")
    with _exporter(web) as url:
        assert _get(url + "/metrics", verify=ca).status_code == 200
        assert _get(url + "/metrics", verify=ca, cert=_cert(pki, "client")).status_code == 200
        assert _refused(url + "/metrics", verify=ca, cert=_cert(pki, "rogue-client"))
        # min_version TLS13: a TLS 1.2 client is turned away
        ctx = ssl.create_default_context(cafile=ca)
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        with pytest.raises(ssl.SSLError):
            with socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), timeout=10) as s:
                ctx.wrap_socket(s, server_hostname="127.0.0.1")


def test_client_allowed_sans(pki, tmp_path):
    web = _web_config(tmp_path, {"tls_server_config": _tls(
        pki, "RequireAndVerifyClientCert", client_allowed_sans=["prometheus.internal"])})
    ca = str(pki / "ca.pem")
    with _exporter(web) as url:
        assert _get(url + "/metrics", verify=ca, cert=_cert(pki, "named-client")).status_code == 200
        assert _refused(url + "/metrics", verify=ca, cert=_cert(pki, "client"))  # right CA, no such SAN


# ---------------------------------------------------------------------------- basic auth


def test_basic_auth_right_wrong_missing_and_health_open(tmp_path):
    web = _web_config(tmp_path, {"basic_auth_users": {"prometheus": _hash("s3cret", "$2y$"),
                                                      "other": _hash("other-pw")},
                                 "http_server_config": {"headers": {"X-Frame-Options": "deny"}}})
    with _exporter(web) as url:
        ok = _get(url + "/metrics", auth=("prometheus", "s3cret"))
        assert ok.status_code == 200 and "sparkwatch_build_info" in ok.text
        assert _get(url + "/", auth=("other", "other-pw")).status_code == 200
        for path in ("/metrics", "/", "/probe?module=spark&target=http://x", "/-/ready", "/nope"):
            for auth in (None, ("prometheus", "wrong"), ("nobody", "s3cret"), ("other", "s3cret")):
                r = _get(url + path, auth=auth)
                assert r.status_code == 401, (path, auth, r.status_code)
                assert r.headers["WWW-Authenticate"] == "Basic" and r.headers["X-Frame-Options"] == "deny"
                assert "sparkwatch" not in r.text
        for header in ("Bearer s3cret", "Basic !!!", "Basic " + "cHJvbWV0aGV1cw=="):  # no colon
            assert _get(url + "/metrics", headers={"Authorization": header}).status_code == 401
        health = _get(url + "/-/healthy")
        assert health.status_code == 200 and health.text == "OK\n"
        assert health.headers["X-Frame-Options"] == "deny"
        assert ok.headers["X-Frame-Options"] == "deny"


def test_basic_auth_over_tls_with_client_certificates(pki, tmp_path):
    web = _web_config(tmp_path, {"tls_server_config": _tls(pki, "RequireAndVerifyClientCert"),
                                 "basic_auth_users": {"prometheus": _hash("s3cret")}})
    kw = {"verify": str(pki / "ca.pem"), "cert": _cert(pki, "client")}
    with _exporter(web) as url:
        assert _get(url + "/metrics", auth=("prometheus", "s3cret"), **kw).status_code == 200
        assert _get(url + "/metrics", **kw).status_code == 401
        assert _get(url + "/-/healthy", **kw).status_code == 200


def test_successful_checks_are_cached_failed_ones_are_not(monkeypatch):
    calls = []
    real = bcrypt.checkpw
    monkeypatch.setattr(bcrypt, "checkpw", lambda pw, h: calls.append(pw) or real(pw, h))
    auth = BasicAuth({"u": _hash("pw")})

    def header(user, pw):
        import base64
        return "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()

    assert auth.check(header("u", "pw")) and len(calls) == 1
    assert auth.check(header("u", "pw")) and len(calls) == 1  # cached
    assert not auth.check(header("u", "nope")) and len(calls) == 2
    assert not auth.check(header("u", "nope")) and len(calls) == 3  # a failure is checked every time
    assert not auth.check(header("x", "pw")) and len(calls) == 4  # unknown users cost a bcrypt check too
    # the cache holds keyed digests of the header (HMAC, a random key per process), not passwords
    other = BasicAuth({"u": _hash("pw")})
    assert other.check(header("u", "pw"))
    assert len(auth._ok) == len(other._ok) == 1 and list(auth._ok) != list(other._ok)
    assert all(b"pw" not in k and header("u", "pw").encode() not in k for k in auth._ok)


def _basic(user, pw):
    import base64
    return "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()


def _cost(hashed: bytes) -> int:
    return int(hashed.split(b"$")[2])


def test_an_unknown_user_costs_a_bcrypt_check_of_the_configured_cost(monkeypatch):
    """Timing must not tell user names apart: the check an unknown user gets runs
    bcrypt at the cost of the configured hashes (their highest), not a fixed one."""
    seen, refused = [], []
    real = bcrypt.checkpw

    def spy(pw, h):
        seen.append(h)
        try:
            return real(pw, h)
        except ValueError:  # a hash bcrypt refuses costs no work at all
            refused.append(h)
            raise

    monkeypatch.setattr(bcrypt, "checkpw", spy)
    auth = BasicAuth({"prometheus": _hash("s3cret")})  # cost 4
    assert not auth.check(_basic("prometheus", "wrong"))
    assert not auth.check(_basic("nobody", "s3cret"))
    assert [_cost(h) for h in seen] == [4, 4]
    seen.clear()
    cost5 = bcrypt.hashpw(b"pw", bcrypt.gensalt(rounds=5)).decode()
    auth = BasicAuth({"a": _hash("pw"), "b": cost5})
    assert not auth.check(_basic("nobody", "pw"))
    assert [_cost(h) for h in seen] == [5] and not refused



def test_a_password_longer_than_bcrypt_reads_is_refused_whatever_bcrypt_does(monkeypatch):
    """bcrypt reads 72 bytes of a password: bcrypt 4 (which pyproject allows) cuts a longer
    one silently, so a wrong password that shares the right one's first 72 bytes would
    pass; bcrypt 5 raises instead. Either way: refused, after a check of the same cost."""
    right = "p" * 72
    seen = []

    def bcrypt4(pw, h):  # what bcrypt 4.x does with a long password
        seen.append(len(pw))
        return bcrypt.hashpw(pw[:72], h) == h

    monkeypatch.setattr(bcrypt, "checkpw", bcrypt4)
    auth = BasicAuth({"u": bcrypt.hashpw(right.encode(), bcrypt.gensalt(rounds=4)).decode()})
    assert auth.check(_basic("u", right))
    assert not auth.check(_basic("u", right + "-anything"))
    assert not auth.check(_basic("u", right + "-anything"))  # and never cached
    assert seen == [72, 72, 72]  # a bcrypt check each time, on what bcrypt reads


FLOOD_CLIENTS = 24


def _status(url, auth, source="127.0.0.1", timeout=30.0):
    """GET ``url`` with basic ``auth`` from ``source`` (a loopback address); the status, or None."""
    import http.client
    from urllib.parse import urlsplit

    u = urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout, source_address=(source, 0))
    try:
        conn.request("GET", u.path, headers={"Authorization": _basic(*auth)})
        r = conn.getresponse()
        r.read()
        return r.status
    except OSError:
        return None
    finally:
        conn.close()


def test_a_flood_of_wrong_passwords_never_refuses_valid_credentials(tmp_path):
    """24 clients send wrong passwords as fast as they are answered (a cost-10 hash:
    tens of milliseconds of bcrypt each) to an exporter with 16 connection slots,
    while Prometheus scrapes with its (already verified) credentials, and another
    client logs in for the first time from another address: every valid request is
    answered 200."""
    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=10)).decode()
    web = _web_config(tmp_path, {"basic_auth_users": {"prometheus": hashed, "grafana": hashed}})
    cfg = tmp_path / "empty.yml"
    cfg.write_text("{}\n")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "exporter.log"
    stop = threading.Event()
    flood: list = []
    with open(log, "wb") as out:
        p = subprocess.Popen([sys.executable, "-m", "sparkwatch", f"--config.file={cfg}", f"--web.config.file={web}",
                              f"--web.listen-address=127.0.0.1:{port}", "--web.max-connections=16"],
                             cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_until_healthy(url, p, 30, output=log.read_text)
            assert _status(url + "/metrics", ("prometheus", "s3cret")) == 200  # its first scrape

            def attacker(i):
                deadline = time.monotonic() + 60
                n = 0
                while not stop.is_set() and time.monotonic() < deadline:
                    flood.append(_status(url + "/metrics", ("prometheus", f"guess-{i}-{n}"), timeout=5))
                    n += 1

            threads = [threading.Thread(target=attacker, args=(i,), daemon=True) for i in range(FLOOD_CLIENTS)]
            for t in threads:
                t.start()
            try:
                deadline = time.monotonic() + 30
                while len(flood) < 2 * FLOOD_CLIENTS and time.monotonic() < deadline:
                    time.sleep(0.05)
                assert len(flood) >= 2 * FLOOD_CLIENTS, "the flood did not get going"
                valid = [_status(url + "/metrics", ("prometheus", "s3cret")) for _ in range(10)]
                first_login = _status(url + "/metrics", ("grafana", "s3cret"), source="127.0.0.2")
            finally:
                stop.set()
                for t in threads:
                    t.join(30)
        finally:
            stop_process_group(p)
    assert valid == [200] * 10, valid
    assert first_login == 200
    assert 200 not in flood and 401 in flood, sorted(set(flood), key=str)


# ---------------------------------------------------------------------------- bad configurations


def _bad_configs(pki, tmp_path):
    server = {"cert_file": str(pki / "server.pem"), "key_file": str(pki / "server.key")}
    return [
        ({"tls_server_config": dict(server, cert_fil="x")}, "tls_server_config.cert_fil", "unknown key"),
        ({"basic_auth_user": {}}, "basic_auth_user", "unknown key"),
        ({"tls_server_config": dict(server, cert_file=str(tmp_path / "missing.pem"))},
         "tls_server_config.cert_file", "no such file"),
        ({"tls_server_config": dict(server, key_file=str(pki / "client.key"))}, "tls_server_config.key_file",
         "not the key"),
        ({"tls_server_config": dict(server, key_file=str(pki / "server.pem"))}, "tls_server_config.key_file",
         "no PEM private key"),
        ({"tls_server_config": {"key_file": str(pki / "server.key")}}, "tls_server_config", "cert_file is missing"),
        ({"tls_server_config": dict(server, client_auth_type="RequireAndVerifyClientCert")},
         "tls_server_config", "client_ca_file is missing"),
        ({"tls_server_config": dict(server, client_auth_type="RequireAnyClientCert")},
         "tls_server_config.client_auth_type", "not supported"),
        ({"tls_server_config": dict(server, client_auth_type="Sometimes")},
         "tls_server_config.client_auth_type", "RequireAndVerifyClientCert"),
        ({"tls_server_config": dict(server, cipher_suites=["TLS_AES_128_GCM_SHA256"])},
         "tls_server_config.cipher_suites", "does not support"),
        ({"basic_auth_users": {"prometheus": "plaintext-password"}}, "basic_auth_users.prometheus",
         "not a bcrypt hash"),
        ({"basic_auth_users": {"a:b": _hash("x")}}, "basic_auth_users", "contains ':'"),
        ({"http_server_config": {"headers": {"Server": "x"}}}, "http_server_config.headers", "cannot be set"),
    ]


def test_bad_web_configs_name_the_key(pki, tmp_path):
    for data, key, reason in _bad_configs(pki, tmp_path):
        with pytest.raises(ConfigError) as e:
            parse_web_config(data, "web.yml")
        msg = str(e.value)
        assert f"  {key}: " in msg and reason in msg, (data, msg)
        assert "plaintext-password" not in msg


def test_serve_with_a_bad_web_config_exits_2_before_listening(pki, tmp_path):
    cfg = tmp_path / "empty.yml"
    cfg.write_text("{}\n")
    web = _web_config(tmp_path, {"basic_auth_users": {"prometheus": "plaintext-password"}})
    port = free_port()
    p = subprocess.run([sys.executable, "-m", "sparkwatch", f"--config.file={cfg}", f"--web.config.file={web}",
                        f"--web.listen-address=127.0.0.1:{port}"],
                       cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert p.returncode == 2, p.stderr
    assert "basic_auth_users.prometheus" in p.stderr and "listening" not in p.stderr
    assert "plaintext-password" not in p.stderr


def test_serve_with_a_missing_web_config_file_exits_2(tmp_path, capsys):
    cfg = tmp_path / "empty.yml"
    cfg.write_text("{}\n")
    assert main([f"--config.file={cfg}", f"--web.config.file={tmp_path / 'nope.yml'}",
                 "--web.listen-address=127.0.0.1:0"]) == 2
    err = capsys.readouterr().err
    assert "nope.yml" in err and "cannot read" in err


def test_check_config_validates_the_web_config(pki, tmp_path, capsys):
    cfg = tmp_path / "sparkwatch.yml"
    cfg.write_text("spark:\n  - url: http://localhost:4040\n")
    good = _web_config(tmp_path, {"tls_server_config": _tls(pki, "RequireAndVerifyClientCert"),
                                  "basic_auth_users": {"prometheus": _hash("x")}})
    assert main(["check-config", str(cfg), "--web.config.file", str(good)]) == 0
    out = capsys.readouterr().out
    assert f"{cfg}: OK" in out and f"{good}: OK" in out and "RequireAndVerifyClientCert" in out
    assert main(["check-config", f"--web.config.file={good}"]) == 0  # the web config alone
    capsys.readouterr()
    for data, key, reason in _bad_configs(pki, tmp_path)[:4]:
        bad = _web_config(tmp_path, data)
        assert main(["check-config", str(cfg), "--web.config.file", str(bad)]) == 2
        captured = capsys.readouterr()
        assert key in captured.err and reason in captured.err
        assert f"{cfg}: OK" in captured.out  # the other file is still checked
    with pytest.raises(SystemExit) as e:
        main(["check-config"])
    assert e.value.code == 2


def test_empty_web_config_serves_plain_http(tmp_path):
    web = tmp_path / "web.yml"
    web.write_text("# nothing configured\ntls_server_config: {}\n")
    with _exporter(web) as url:
        assert url.startswith("http://")
        assert _get(url + "/metrics").status_code == 200


def test_the_example_in_docs_security_md_is_valid(pki):
    text = (ROOT / "docs" / "security.md").read_text()
    block = text.split("## TLS and basic authentication", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    for name, real in (("server.pem", "server.pem"), ("server.key", "server.key"), ("clients-ca.pem", "ca.pem")):
        block = block.replace(f"/etc/sparkwatch/tls/{name}", str(pki / real))
    cfg = parse_web_config(yaml.safe_load(block), "docs/security.md example")
    assert cfg.tls_server_config.client_auth_type == "RequireAndVerifyClientCert"
    assert list(cfg.basic_auth_users) == ["prometheus"]
    for flag in ("--web.config.file", "--web.max-connections", "--web.listen-address=127.0.0.1:9951"):
        assert flag in text
