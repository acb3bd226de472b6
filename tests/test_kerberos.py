"""Kerberos (SPNEGO) authentication (exporter/kerberos.py) against a real MIT KDC and a
real Apache with mod_auth_gssapi in front of a loopback backend (testbed/kerberos.py)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from sparkwatch.collector import TargetError
from sparkwatch.kerberos import KerberosError, spnego_auth
from testbed.counting_http import CountingServer
from testbed.kerberos import kerberos_realm, missing, realm_of_this_process, spnego_front

pytestmark = pytest.mark.skipif(bool(missing()), reason=f"needs MIT Kerberos and Apache with mod_auth_gssapi "
                                                        f"(scripts/install-test-deps); missing: {missing()}")


@pytest.fixture(scope="module")
def realm(tmp_path_factory):
    """One realm (its krb5.conf is this process's) for the tests that do not stop its KDC."""
    with realm_of_this_process(tmp_path_factory.mktemp("realm")) as r:
        yield r


@pytest.fixture(scope="module")
def backend():
    with CountingServer(lambda path, query: (200, f"backend {path}".encode(), "text/plain"), delay=0.05) as srv:
        yield srv


@pytest.fixture(scope="module")
def front(realm, backend, tmp_path_factory):
    with spnego_front(realm, backend.url, tmp_path_factory.mktemp("apache")) as f:
        yield f


def _get(front, auth, path="/api/v1/applications"):
    r = requests.get(front.url + path, auth=auth, timeout=30)
    r.close()
    return r


def test_the_realm_issues_tickets_for_the_client_keytab(realm, tmp_path):
    cc = realm.kinit(realm.client_principal, realm.client_keytab, tmp_path / "cc")
    out = subprocess.run(["klist", "-c", f"FILE:{cc}"], capture_output=True, text=True, env={**os.environ, **realm.env})
    assert out.returncode == 0, out.stderr
    assert f"Default principal: {realm.client_principal}" in out.stdout
    assert f"krbtgt/{realm.realm}@{realm.realm}" in out.stdout


def test_the_front_answers_401_negotiate_without_credentials(front, backend):
    before = backend.counts()["requests"]
    r = _get(front, None)
    assert r.status_code == 401
    assert r.headers.get("WWW-Authenticate") == "Negotiate"
    assert backend.counts()["requests"] == before  # nothing reached the backend


@pytest.mark.parametrize("mutual", ["optional", "required"])
def test_a_keytab_authenticates_through_to_the_backend(realm, front, backend, mutual):
    auth = spnego_auth(principal=realm.client_principal, keytab=str(realm.client_keytab), mutual=mutual)
    r = _get(front, auth, "/api/v1/applications")
    assert r.status_code == 200
    assert r.text == "backend /api/v1/applications"
    assert r.headers["X-Authenticated-As"] == realm.client_principal
    assert [h.status_code for h in r.history] == [401]  # challenged, then authenticated
    assert r.headers["WWW-Authenticate"].startswith("Negotiate ")  # the server's token, checked by the auth
    assert "KRB5CCNAME" not in os.environ


def test_a_ticket_cache_authenticates(realm, front, tmp_path):
    cc = realm.kinit(realm.client_principal, realm.client_keytab, tmp_path / "cc")
    r = _get(front, spnego_auth(ccache=str(cc)))
    assert r.status_code == 200
    assert r.headers["X-Authenticated-As"] == realm.client_principal


def test_a_missing_keytab_is_named(realm, tmp_path):
    with pytest.raises(KerberosError) as e:
        spnego_auth(principal=realm.client_principal, keytab=str(tmp_path / "nope.keytab"))
    assert "nope.keytab: no such file" in str(e.value)
    assert isinstance(e.value, TargetError) and e.value.reason == "auth"


def test_a_principal_not_in_the_keytab_is_named(realm):
    other = realm.principal("someone-else")
    with pytest.raises(KerberosError) as e:
        spnego_auth(principal=other, keytab=str(realm.client_keytab))
    assert f"has no key of principal {other}" in str(e.value)
    assert str(realm.client_keytab) in str(e.value)


def test_a_file_that_is_not_a_keytab(realm, tmp_path):
    bogus = tmp_path / "bogus.keytab"
    bogus.write_text("password=hunter2\n")
    with pytest.raises(KerberosError) as e:
        spnego_auth(principal=realm.client_principal, keytab=str(bogus))
    assert "not a keytab file" in str(e.value)
    assert "hunter2" not in str(e.value)


def test_a_keytab_exported_before_the_key_changed_is_refused_clearly(realm, front, backend):
    keytab = realm.add_principal("rotated")
    auth = spnego_auth(principal=realm.principal("rotated"), keytab=str(keytab))  # the keytab is fine so far
    realm.rekey("rotated")  # a new key (and kvno) at the KDC: the keytab is now wrong
    before = backend.counts()["requests"]
    with pytest.raises(KerberosError) as e:
        _get(front, auth)
    msg = str(e.value)
    assert "the KDC refused the keytab's key" in msg and "export a new keytab" in msg
    assert realm.principal("rotated") in msg
    assert backend.counts()["requests"] == before
    # the new keytab works
    realm.export_keytab("rotated", keytab)
    assert _get(front, spnego_auth(principal=realm.principal("rotated"), keytab=str(keytab))).status_code == 200


def test_an_expired_password_is_named(realm, front):
    keytab = realm.add_principal("expired")
    realm.expire_password("expired")
    with pytest.raises(KerberosError) as e:
        _get(front, spnego_auth(principal=realm.principal("expired"), keytab=str(keytab)))
    assert "password has expired" in str(e.value)


def test_an_unknown_service_principal_is_named(realm, front):
    auth = spnego_auth(principal=realm.client_principal, keytab=str(realm.client_keytab), service_host="nosuchhost")
    with pytest.raises(KerberosError) as e:
        _get(front, auth)
    assert "no service principal HTTP/nosuchhost" in str(e.value)


@pytest.mark.slow
def test_an_expired_ticket_cache_says_to_renew_it(realm, front, tmp_path):
    keytab = realm.add_principal("shortcache", maxlife=2)
    cc = realm.kinit("shortcache", keytab, tmp_path / "cc")
    auth = spnego_auth(ccache=str(cc))
    assert _get(front, auth).status_code == 200
    _wait_expired(realm, cc)
    with pytest.raises(KerberosError) as e:
        _get(front, auth)
    assert "the tickets have expired" in str(e.value) and "kinit" in str(e.value)
    assert str(cc) in str(e.value)


@pytest.mark.slow
def test_a_keytab_gets_new_tickets_when_they_have_expired(realm, front, tmp_path):
    """With tickets of 2 s, a request after they expired (say, the exporter stopped) fetches new ones."""
    keytab = realm.add_principal("shortkeytab", maxlife=2)
    auth = spnego_auth(principal=realm.principal("shortkeytab"), keytab=str(keytab))
    assert _get(front, auth).status_code == 200
    cc = realm.kinit("shortkeytab", keytab, tmp_path / "cc")  # a ticket of the same age, to watch it expire
    _wait_expired(realm, cc)
    r = _get(front, auth)
    assert r.status_code == 200
    assert r.headers["X-Authenticated-As"] == realm.principal("shortkeytab")


def _wait_expired(realm, cc: Path, timeout: float = 30) -> None:
    """Until the tickets in ``cc`` have expired (klist -s fails), and one second more (the clock skew allowed)."""
    end = time.monotonic() + timeout
    env = {**os.environ, **realm.env}
    while subprocess.run(["klist", "-s", "-c", f"FILE:{cc}"], env=env).returncode == 0:
        assert time.monotonic() < end, "the ticket did not expire"
        time.sleep(0.2)
    time.sleep(1.1)


def test_a_missing_ticket_cache_is_named(tmp_path, realm):
    with pytest.raises(KerberosError) as e:
        spnego_auth(ccache=str(tmp_path / "krb5cc_none"))
    assert "krb5cc_none: no such file" in str(e.value) and "kinit" in str(e.value)


def test_an_unreachable_kdc_is_named(tmp_path, monkeypatch, backend):
    with kerberos_realm(tmp_path / "realm", realm="UNREACHABLE.TEST") as r:
        for k, v in r.env.items():
            monkeypatch.setenv(k, v)
        with spnego_front(r, backend.url, tmp_path / "apache") as f:
            auth = spnego_auth(principal=r.client_principal, keytab=str(r.client_keytab))  # no KDC needed yet
            r.stop_kdc()
            with pytest.raises(KerberosError) as e:
                _get(f, auth)
            msg = str(e.value)
            assert "cannot reach any KDC of UNREACHABLE.TEST" in msg and str(r.krb5_conf) in msg
            r.start_kdc()  # back up: the same auth works
            assert _get(f, auth).status_code == 200


@pytest.mark.slow
def test_a_hung_kdc_does_not_hold_a_request_past_its_timeout(tmp_path, monkeypatch, backend):
    """libkrb5 waits for a KDC that does not answer for about a minute, and cannot be
    interrupted: the request gives up at its own timeout (the exchange goes on in a
    thread of its own), and while that exchange is still waiting the next ones fail at once."""
    with kerberos_realm(tmp_path / "realm", realm="HUNG.TEST") as r:
        for k, v in r.env.items():
            monkeypatch.setenv(k, v)
        with spnego_front(r, backend.url, tmp_path / "apache") as f:
            auth = spnego_auth(principal=r.client_principal, keytab=str(r.client_keytab))
            with r.unresponsive_kdc():
                with pytest.raises(KerberosError) as e:
                    requests.get(f.url + "/", auth=auth, timeout=2)
                assert "no answer from the KDC within 2.0s" in str(e.value)
                assert str(r.krb5_conf) in str(e.value)
                with pytest.raises(KerberosError) as e:
                    requests.get(f.url + "/", auth=auth, timeout=2)
                assert "the KDC has not answered an earlier request yet" in str(e.value)
            # the KDC answers again: the waiting exchange ends, and the next requests authenticate
            end = time.monotonic() + 120
            while True:
                try:
                    assert _get(f, auth).status_code == 200
                    break
                except KerberosError as e:
                    assert "has not answered an earlier request" in str(e) and time.monotonic() < end, str(e)
                    time.sleep(0.5)


def test_two_principals_in_one_process_do_not_interfere(realm, front, tmp_path, monkeypatch):
    # were the default ticket cache used, it would be this file
    monkeypatch.setenv("KRB5CCNAME", f"FILE:{tmp_path / 'default-cc'}")
    env_before = dict(os.environ)
    second = realm.add_principal("auditor")
    auths = {realm.client_principal: spnego_auth(principal=realm.client_principal, keytab=str(realm.client_keytab)),
             realm.principal("auditor"): spnego_auth(principal=realm.principal("auditor"), keytab=str(second))}

    def one(i):
        principal = list(auths)[i % 2]
        return principal, _get(front, auths[principal], f"/p{i}").headers.get("X-Authenticated-As")

    with ThreadPoolExecutor(8) as pool:
        seen = list(pool.map(one, range(32)))
    assert all(got == principal for principal, got in seen), seen
    assert dict(os.environ) == env_before
    assert not (tmp_path / "default-cc").exists()


def test_one_auth_serves_concurrent_threads(realm, front, backend):
    """The request threads of one target share its auth; each thread's answer token is checked
    against its own security context (the backend takes 50 ms: the exchanges overlap)."""
    auth = spnego_auth(principal=realm.client_principal, keytab=str(realm.client_keytab), mutual="required")
    backend.reset_counts()
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda i: _get(front, auth, f"/c{i}").status_code, range(40)))
    assert statuses == [200] * 40
    assert backend.counts()["max_in_flight"] > 1  # they did overlap


def test_no_token_in_the_logs(realm, front, caplog):
    caplog.set_level(logging.DEBUG)
    auth = spnego_auth(principal=realm.client_principal, keytab=str(realm.client_keytab))
    r = _get(front, auth)
    assert r.status_code == 200
    logged = "\n".join(rec.getMessage() for rec in caplog.records)
    assert "Negotiate " not in logged
    # and a failure is raised once, not logged with a traceback
    caplog.clear()
    with pytest.raises(KerberosError):
        _get(front, spnego_auth(principal=realm.client_principal, keytab=str(realm.client_keytab),
                                service_host="nosuchhost"))
    assert not [rec for rec in caplog.records if rec.name.startswith("requests_gssapi")]


def test_bad_arguments():
    with pytest.raises(KerberosError, match="not both nor neither"):
        spnego_auth(principal="a@B")
    with pytest.raises(KerberosError, match="principal to authenticate as is missing"):
        spnego_auth(keytab="/etc/krb5.keytab")
    with pytest.raises(KerberosError, match="mutual"):
        spnego_auth(ccache="/tmp/x", mutual="sometimes")


def test_without_the_extra_the_message_says_how_to_install_it():
    code = ("import sys; sys.modules['gssapi'] = None\n"
            "from sparkwatch.kerberos import KerberosError, spnego_auth\n"
            "try:\n    spnego_auth(principal='a@B', keytab='/k')\n"
            "except KerberosError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         cwd=Path(__file__).resolve().parent.parent)
    assert "pip install 'sparkwatch[kerberos]'" in out.stdout, out.stderr
