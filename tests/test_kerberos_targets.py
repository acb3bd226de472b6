"""The exporter's targets with ``kerberos:`` (SPNEGO), for real: an MIT KDC on loopback and
Apache with mod_auth_gssapi in front (testbed/kerberos.py) of the YARN ResourceManager
stand-in (testbed/yarn.py: an HA pair, its web proxy, AmIpFilter'd AMs serving
answers recorded from real Spark drivers, or a real PySpark driver), of the Livy stand-in
and of a Spark UI.

- the credentials (the Negotiate token) go to the configured origins only: every RM of an
  HA list, never a driver or an AM;
- a keytab the KDC no longer accepts is that target's ``auth`` error, saying what to fix;
- ``sparkwatch check-config`` says what is missing (the keytab, the principal in it, the
  realm configuration);
- a target that wants Kerberos and has none says so.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from sparkwatch.cli import main
from sparkwatch.config import parse_config
from testbed.exporter import find, running_exporter, samples, scrape, value
from testbed.yarn import PROXY_ADDRESS, YarnCluster
from testbed.kerberos import missing, realm_of_this_process, spnego_front
from testbed.livy_server import livy_server
from testbed.spark import ReplayServer, recording_dirs, routes_from_recording

pytestmark = pytest.mark.skipif(bool(missing()), reason=f"needs MIT Kerberos and Apache with mod_auth_gssapi "
                                                        f"(scripts/install-test-deps); missing: {missing()}")


@pytest.fixture(scope="module")
def realm(tmp_path_factory):
    """A realm whose krb5.conf is this process's (the in-process exporter's)."""
    with realm_of_this_process(tmp_path_factory.mktemp("realm")) as r:
        yield r


def _recorded():
    out = []
    for d in recording_dirs():
        out.append((json.loads((d / "index.json").read_text())["app_id"], routes_from_recording(d)))
    return out


def _krb(realm, **kw) -> dict:
    d = {"principal": realm.client_principal, "keytab": str(realm.client_keytab)}
    d.update(kw)
    return d


def _state(app, name):
    (t,) = [t for t in app.targets if t.name == name]
    return t.state


def _auth_headers(received):
    return [h for *_, headers in received for k, h in headers if k.lower() == "authorization"]


def test_a_yarn_ha_pair_behind_spnego_with_a_keytab(realm):
    """The standby's 307 to the active RM's front is followed (both are configured, both get
    the token); the proxy's warning (security on: the apps are another user's) is passed with
    its cookie; an unmanaged AM's AmIpFilter sends to a front's /proxy/redirect/. No AM ever
    gets the token."""
    rec = _recorded()
    with YarnCluster(ha=True, kerberos=realm) as y:
        managed = y.add_app("etl", routes=rec[0][1], user="spark")
        client = y.add_app("client-mode", unmanaged=True, routes=rec[1][1], user="spark")
        y.failover("rm2")
        cfg = {"exporter": {"scrape_timeout": 20},
               "spark": [{"name": "yarn", "urls": y.urls, "discover": "yarn", "kerberos": _krb(realm),
                          "discovered_ui_allowed": [client.am.url]}]}
        with running_exporter(cfg) as (base, app):
            ss = samples(scrape(base))
            ss = samples(scrape(base))
            err = _state(app, "yarn").last_error
        rm1, rm2 = y.rms
    assert value(ss, "sparkwatch_target_up", kind="spark", target="yarn") == 1, err
    assert value(ss, "spark_cluster_applications_scraped", target="yarn") == 2
    assert sorted(lab["app_id"] for n, lab, _ in ss if n == "spark_app_info") == sorted(s for s, _ in rec[:2])
    assert not find(ss, "sparkwatch_target_scrape_errors_total", target="yarn", reason="partial")
    assert rm1.warned == rm2.warned == 0
    # as the principal's short name, on both RMs (rm1: the standby the AmIpFilter picked)
    assert {u for _, u in rm2.requests} == {"monitor"} and rm1.requests
    assert {u for _, u in rm1.requests} == {"monitor"}
    for a in (managed, client):
        assert a.am.requests and {(r.remote_addr, r.proxy_user) for r in a.am.requests} == {(PROXY_ADDRESS, "monitor")}
        assert not _auth_headers(a.am.received), "the Negotiate token reached an AM"
    assert client.am.redirected > 0  # it was asked directly, and sent the exporter to the proxy


def test_a_keytab_the_kdc_no_longer_accepts_is_that_targets_auth_error(realm):
    keytab = realm.add_principal("monitor-rotated")
    realm.rekey("monitor-rotated")  # the keytab now holds an old key
    with YarnCluster(kerberos=realm) as y:
        cfg = {"exporter": {"scrape_timeout": 20},
               "spark": [{"name": "rotated", "url": y.url, "discover": "yarn",
                          "kerberos": _krb(realm, principal=realm.principal("monitor-rotated"), keytab=str(keytab))},
                         {"name": "good", "url": y.url, "discover": "yarn", "kerberos": _krb(realm)}]}
        with running_exporter(cfg) as (base, app):
            ss = samples(scrape(base))
            err = _state(app, "rotated").last_error
    assert value(ss, "sparkwatch_target_up", kind="spark", target="rotated") == 0
    assert value(ss, "sparkwatch_target_scrape_errors_total", kind="spark", target="rotated", reason="auth") == 1
    assert "keytab is out of date" in err and "monitor-rotated" in err, err
    assert value(ss, "sparkwatch_target_up", kind="spark", target="good") == 1


def test_without_kerberos_the_error_says_the_endpoint_wants_it(realm):
    with YarnCluster(kerberos=realm) as y:
        with running_exporter({"spark": [{"name": "yarn", "url": y.url, "discover": "yarn"}]}) as (base, app):
            ss = samples(scrape(base))
            err = _state(app, "yarn").last_error
    assert value(ss, "sparkwatch_target_scrape_errors_total", kind="spark", target="yarn", reason="auth") == 1
    assert "HTTP 401" in err and "Kerberos (SPNEGO)" in err and "kerberos:" in err, err


def test_a_livy_target_behind_spnego(realm, tmp_path):
    with livy_server() as livy, spnego_front(realm, livy.url, tmp_path / "apache") as front:
        livy.state.add("batch", 3, state="success")
        livy.state.add("interactive", 1, state="idle")
        cfg = {"livy": [{"name": "livy", "url": front.url, "kerberos": _krb(realm)},
                        {"name": "bare", "url": front.url}]}
        with running_exporter(cfg) as (base, app):
            ss = samples(scrape(base))
            err = _state(app, "bare").last_error
    assert value(ss, "sparkwatch_target_up", kind="livy", target="livy") == 1
    assert value(ss, "livy_sessions", target="livy", kind="batch", state="success") == 3
    assert value(ss, "sparkwatch_target_up", kind="livy", target="bare") == 0
    assert "Kerberos (SPNEGO)" in err, err


def test_a_spark_ui_behind_spnego_with_a_ticket_cache(realm, tmp_path):
    (spark_id, routes), *_ = _recorded()
    cc = realm.kinit(realm.client_principal, realm.client_keytab, tmp_path / "cc")
    with ReplayServer(routes) as ui, spnego_front(realm, ui.url, tmp_path / "apache") as front:
        cfg = {"spark": [{"name": "ui", "url": front.url, "kerberos": {"ccache": str(cc)}}]}
        with running_exporter(cfg) as (base, _):
            ss = samples(scrape(base))
    assert value(ss, "sparkwatch_target_up", kind="spark", target="ui") == 1
    assert find(ss, "spark_app_info", target="ui", app_id=spark_id)


# ---------------------------------------------------------------- check-config


def _check_config(tmp_path, capsys, kerberos: dict):
    path = tmp_path / "sparkwatch.yml"
    path.write_text(yaml.safe_dump({"spark": [{"url": "http://rm1:8088", "discover": "yarn", "kerberos": kerberos}]}))
    capsys.readouterr()
    rc = main(["check-config", str(path)])
    return rc, capsys.readouterr().err


def test_check_config_says_what_kerberos_lacks(realm, tmp_path, capsys, monkeypatch):
    rc, err = _check_config(tmp_path, capsys, _krb(realm, keytab=str(tmp_path / "monitor.keytab")))
    assert rc == 2 and "spark[0].kerberos" in err and "monitor.keytab: no such file" in err, err
    unreadable = tmp_path / "unreadable.keytab"
    unreadable.write_bytes(Path(realm.client_keytab).read_bytes())
    unreadable.chmod(0)
    if os.geteuid() != 0:  # root reads it anyway
        rc, err = _check_config(tmp_path, capsys, _krb(realm, keytab=str(unreadable)))
        assert rc == 2 and "not readable" in err, err
    rc, err = _check_config(tmp_path, capsys, _krb(realm, principal=realm.principal("nobody-here")))
    assert rc == 2 and "has no key of principal nobody-here@" in err, err
    rc, err = _check_config(tmp_path, capsys, {"principal": realm.client_principal})
    assert rc == 2 and "give keytab (with principal) or ccache" in err, err
    rc, err = _check_config(tmp_path, capsys, {"ccache": str(tmp_path / "krb5cc_missing")})
    assert rc == 2 and "krb5cc_missing: no such file" in err, err
    monkeypatch.setenv("KRB5_CONFIG", str(tmp_path / "no-krb5.conf"))
    rc, err = _check_config(tmp_path, capsys, _krb(realm))
    assert rc == 2 and f"realm configuration {tmp_path / 'no-krb5.conf'} does not exist" in err, err
    monkeypatch.undo()
    rc, err = _check_config(tmp_path, capsys, _krb(realm))
    assert rc == 0, err


def test_kerberos_is_one_of_the_authentications(realm):
    with pytest.raises(Exception, match="give only one of basic_auth, kerberos"):
        parse_config({"spark": [{"url": "http://rm1:8088", "basic_auth": {"username": "u", "password": "p"},
                                 "kerberos": _krb(realm)}]})


# ---------------------------------------------------------------- a real PySpark driver


@pytest.mark.spark
@pytest.mark.slow
def test_a_real_pyspark_driver_through_a_kerberized_yarn_proxy(realm):
    """A real Spark 4.0 driver's UI as the AM of an application on the Kerberized stand-in:
    read through the web proxy with the keytab's tickets, the driver never sees them."""
    from testbed.spark import spark_app
    from tests.helpers import spark_python

    with spark_app("4.0", spark_python("4.0"), stream=False) as driver, YarnCluster(kerberos=realm) as y:
        a = y.add_app("pyspark", driver=driver.url, user="spark")
        cfg = {"exporter": {"scrape_timeout": 30},
               "spark": [{"name": "yarn", "url": y.url, "discover": "yarn", "kerberos": _krb(realm)}]}
        with running_exporter(cfg) as (base, _):
            ss = samples(scrape(base))
    assert value(ss, "spark_cluster_applications_scraped", target="yarn") == 1
    assert find(ss, "spark_app_info", target="yarn", app_id=driver.app_id)
    assert value(ss, "spark_executors_active", target="yarn", app_id=driver.app_id) >= 1
    assert not _auth_headers(a.am.received)


# ---------------------------------------------------------------- the documentation's examples


def test_the_secured_yarn_example_of_docs_spark_md_is_valid_and_allows_what_it_says(realm, tmp_path):
    """The example, with its keytab made for real (its principal, in this realm) and its CA file."""
    import re

    from sparkwatch.collectors.spark.clusters import ui_policy

    text = (Path(__file__).resolve().parent.parent / "docs" / "spark.md").read_text()
    (block,) = [b for b in re.findall(r"```yaml\n(.*?)```", text, re.S) if "kerberos:" in b]
    data = yaml.safe_load(block)
    (krb,) = [t["kerberos"] for t in data["spark"] if "kerberos" in t]
    name, _, _ = krb["principal"].partition("@")
    krb["principal"] = realm.principal(name)
    krb["keytab"] = str(realm.add_principal(name, keytab=tmp_path / "sparkwatch.keytab"))
    for t in data["spark"]:
        if "tls_config" in t:
            (tmp_path / "ca.pem").write_text("not read at load\n")
            t["tls_config"]["ca_file"] = str(tmp_path / "ca.pem")
    cfg = parse_config(data, "docs/spark.md")
    (ha,) = [t for t in cfg.spark if t.urls]
    assert ha.kerberos is not None and len(ha.urls) == 2
    p = ui_policy(ha.discover, ha.own_urls(), ha.discovered_ui_allowed)
    for rm in ha.urls:
        assert p.allows(f"{rm}/proxy/application_1_0001", "application_1_0001")
        assert p.allows_redirect(f"{rm}/proxy/redirect/application_1_0001/jobs/")
    assert p.allows("http://edge-3.prod.internal:4040")
    assert not p.allows("http://edge-3.prod.internal.attacker.example:4040")
    assert not p.allows("https://rm3.prod.internal:8090/proxy/application_1_0001", "application_1_0001")
    (simple,) = [t for t in cfg.spark if t.user_name]
    assert simple.discover == "yarn" and simple.user_name == "sparkwatch"


def test_the_kerberos_example_of_docs_livy_md_is_valid(realm, tmp_path):
    import re

    text = (Path(__file__).resolve().parent.parent / "docs" / "livy.md").read_text()
    (block,) = [b for b in re.findall(r"```yaml\n(.*?)```", text, re.S) if "kerberos:" in b]
    data = yaml.safe_load(block)
    (t,) = data["livy"]
    name = t["kerberos"]["principal"].partition("@")[0]
    t["kerberos"]["principal"] = realm.principal(name)
    t["kerberos"]["keytab"] = str(realm.add_principal(name, keytab=tmp_path / "sparkwatch.keytab"))
    (livy,) = parse_config(data, "docs/livy.md").livy
    assert livy.kerberos is not None and livy.kerberos.auth() is not None
