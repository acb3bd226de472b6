"""A spark target with ``discover: yarn`` against YARN as Hadoop really behaves (issue 20):
testbed/yarn.py, a ResourceManager stand-in rebuilt from Hadoop's sources (its web
proxy, the AmIpFilter in front of each AM, HA, pseudo authentication), each AM serving
answers recorded from real Spark 3.5 and 4.0 drivers.

- an unmanaged AM (client mode, ``spark.yarn.unmanagedAM.enabled``) is read at its own
  URL, which its AmIpFilter sends on to the proxy: the proxy's cookie goes there;
- an RM (or a gateway) that ignores ``applicationTypes`` does not make MapReduce or Tez
  applications count or get read;
- cookies stay with the origin and path they belong to; nothing an application sets
  reaches the RM;
- what an RM says when it cannot answer (a standby without an active RM, a Kerberos or
  pseudo-authentication challenge) is in the error;
- Hadoop's pseudo authentication (``user_name``), and a URL with a query refused;
- a ResourceManager HA pair: the active one is found, remembered, and only the
  configured RMs are asked (and get credentials).

Kerberos (SPNEGO) with a real KDC is in tests/test_kerberos.py.
"""

from __future__ import annotations

import json
from typing import List, Tuple

import pytest

from sparkwatch.config import ConfigError, parse_config
from testbed.exporter import find, running_exporter, samples, scrape, value
from testbed.yarn import AUTH_COOKIE, PROXY_ADDRESS, LoopbackServer, Reply, YarnCluster
from testbed.spark import recording_dirs, routes_from_recording

AUTH = {"username": "monitor", "password": "s3cret-of-the-rm"}


def _recorded() -> List[Tuple[str, dict]]:
    out = []
    for d in recording_dirs():
        out.append((json.loads((d / "index.json").read_text())["app_id"], routes_from_recording(d)))
    assert len(out) >= 2
    return out


def _config(url, **kw) -> dict:
    t = {"name": "yarn", "discover": "yarn"}
    if isinstance(url, list):
        t["urls"] = url
    else:
        t["url"] = url
    t.update(kw)
    return {"exporter": {"scrape_timeout": 10}, "spark": [t]}


def _app_ids(ss) -> List[str]:
    return sorted(lab["app_id"] for n, lab, _ in ss if n == "spark_app_info" and lab["target"] == "yarn")


def _errors(ss, reason: str) -> float:
    found = find(ss, "sparkwatch_target_scrape_errors_total", kind="spark", target="yarn", reason=reason)
    return found[0][2] if found else 0


def _cookies(headers) -> List[str]:
    """The cookies (name=value) a request carried."""
    out = []
    for k, v in headers:
        if k.lower() == "cookie":
            out += [c.strip() for c in v.split(";") if c.strip()]
    return out


def _header(headers, name: str):
    return next((v for k, v in headers if k.lower() == name.lower()), None)


def _last_error(app) -> str:
    (t,) = [t for t in app.targets if t.name == "yarn"]
    return t.state.last_error


# ---------------------------------------------------------------- item 1: an unmanaged AM


def test_an_unmanaged_am_behind_a_secure_proxy_is_read_with_the_proxys_cookie_at_the_proxy():
    """Client mode with spark.yarn.unmanagedAM.enabled: the RM's trackingUrl is the driver
    itself, whose AmIpFilter answers a direct request with a 302 to
    <rm>/proxy/redirect/<app>/...; the proxy (security on) wants its checked_<app> cookie there,
    and the driver has no use for it."""
    (spark_id, routes), *_ = _recorded()
    with YarnCluster(security=True) as y:
        app = y.add_app("client-mode", unmanaged=True, routes=routes, user="alice")
        rm = y.rms[0]
        cfg = _config(y.url, discovered_ui_allowed=[app.am.url])  # the driver's host (the gateway)
        with running_exporter(cfg) as (base, _):
            ss = samples(scrape(base))
            ss2 = samples(scrape(base))
    assert value(ss, "spark_cluster_rejected_uis", target="yarn") == 0
    for s in (ss, ss2):
        assert value(s, "spark_cluster_applications_scraped", target="yarn") == 1
        assert _app_ids(s) == [spark_id]
    assert _errors(ss2, "partial") == 0 and _errors(ss2, "invalid_response") == 0
    assert rm.warned == 0, "the proxy showed its warning page"
    # the direct requests reached the driver without the proxy's cookie ...
    direct = [(p, h) for p, addr, h in app.am.received if addr != PROXY_ADDRESS]
    assert direct and app.am.redirected == len(direct)
    assert not [c for _, h in direct for c in _cookies(h)], direct[:3]
    # ... and the proxy got it at its redirect path, and only its own application's
    redirected = [(p, h) for p, h in rm.received if p.startswith(f"/proxy/redirect/{app.app_id}/")]
    assert redirected
    assert all(_cookies(h) == [f"checked_{app.app_id}=true"] for _, h in redirected), redirected[:3]
    # served to the exporter through the proxy, from the proxy's address
    assert app.am.requests and {r.remote_addr for r in app.am.requests} == {PROXY_ADDRESS}


# ---------------------------------------------------------------- item 2: only Spark applications


def test_an_rm_that_ignores_application_types_does_not_make_other_applications_count():
    """A gateway (or an RM) that drops ?applicationTypes=SPARK answers MapReduce and Tez
    applications too: they are neither counted nor read. Hadoop compares types lower-cased."""
    rec = _recorded()
    with YarnCluster(ignore_application_types=True) as y:
        y.add_app("etl", routes=rec[0][1])
        y.add_app("etl-lower-case", routes=rec[1][1], application_type="spark")
        others = [y.add_app("wordcount", routes=rec[0][1], application_type="MAPREDUCE"),
                  y.add_app("hive", routes=rec[0][1], application_type="TEZ"),
                  y.add_app("plain-yarn", routes=rec[0][1], application_type="YARN")]
        with running_exporter(_config(y.url)) as (base, _):
            ss = samples(scrape(base))
        listing = [p for p, _ in y.rms[0].requests if p.startswith("/ws/v1/cluster/apps")]
    assert listing and all("applicationTypes=SPARK" in p for p in listing)
    assert value(ss, "spark_cluster_applications", target="yarn") == 2
    assert value(ss, "spark_cluster_applications_scraped", target="yarn") == 2
    assert _app_ids(ss) == sorted({rec[0][0], rec[1][0]})
    assert all(not a.am.received for a in others), "a non-Spark application was read"


# ---------------------------------------------------------------- item 3: cookies


def test_cookies_stay_with_their_origin_and_path_and_nothing_an_application_sets_reaches_the_rm():
    rec = _recorded()
    planted = [("Set-Cookie", f"{AUTH_COOKIE}=planted-by-the-app; Path=/"), ("Set-Cookie", "JSESSIONID=app; Path=/"),
               ("Set-Cookie", "checked_application_1764400000000_0099=true; Path=/")]
    with YarnCluster(security=True) as y:
        apps = []
        for i, (_, routes) in enumerate(rec):
            routes = dict(routes)
            status, body, ctype, *_ = routes["/api/v1/applications"]
            routes["/api/v1/applications"] = (status, body, ctype, planted)
            apps.append(y.add_app(f"app{i}", routes=routes, user="alice"))
        rm = y.rms[0]
        with running_exporter(_config(y.url)) as (base, _):
            for _ in range(3):
                ss = samples(scrape(base))
    assert value(ss, "spark_cluster_applications_scraped", target="yarn") == len(rec)
    assert rm.warned == 0
    listing = [h for p, h in rm.received if p.startswith("/ws/v1/cluster/apps")]
    assert len(listing) == 3 and all(_cookies(h) == [] for h in listing), listing
    for a in apps:
        proxied = [h for p, h in rm.received if p.startswith(f"/proxy/{a.app_id}/")]
        assert proxied and all(_cookies(h) == [f"checked_{a.app_id}=true"] for h in proxied)
    assert all(p.startswith(("/ws/v1/cluster/apps", "/proxy/application_")) for p, _ in rm.received)
    # the AMs (behind the proxy) never see the client's cookies, only the proxy's proxy-user
    for a in apps:
        assert all(c.startswith("proxy-user=") for _, _, h in a.am.received for c in _cookies(h))


# ---------------------------------------------------------------- item 4: what the RM says


def test_a_standby_rm_without_an_active_one_says_so_in_the_error():
    with YarnCluster(ha=True) as y:
        y.failover(None)
        with running_exporter(_config(y.rms[1].url)) as (base, app):
            ss = samples(scrape(base))
            err = _last_error(app)
    assert value(ss, "sparkwatch_target_up", kind="spark", target="yarn") == 0
    assert "Can not find any active RM" in err, err
    assert _errors(ss, "http_status") == 1


def _negotiate_server():
    """What a Kerberized RM answers without credentials (hadoop-auth's KerberosAuthenticationHandler)."""
    return LoopbackServer(lambda req: Reply(401, b"<html>Authentication required</html>", "text/html",
                                            [("WWW-Authenticate", "Negotiate")]))


def test_a_kerberos_challenge_says_to_configure_kerberos_not_basic_auth():
    with _negotiate_server() as srv:
        with running_exporter(_config(srv.url)) as (base, app):
            ss = samples(scrape(base))
            err = _last_error(app)
    assert _errors(ss, "auth") == 1
    assert "Kerberos" in err and "SPNEGO" in err and "kerberos:" in err, err
    assert "basic_auth" not in err and "bearer" not in err, err


def test_the_doctor_does_not_suggest_digest_auth_for_an_http_target(tmp_path, capsys):
    import yaml

    from sparkwatch.cli import main

    with _negotiate_server() as srv:
        path = tmp_path / "sparkwatch.yml"
        path.write_text(yaml.safe_dump(_config(srv.url)))
        capsys.readouterr()
        main(["doctor", "--config.file", str(path), "--json"])
        doc = json.loads(capsys.readouterr().out)
    (f,) = [f for f in doc["findings"] if f["target"] == "yarn"]
    assert "(auth)" in f["summary"] and "kerberos:" in f["summary"], f
    assert "digest_auth" not in f["fix"], f["fix"]


# ---------------------------------------------------------------- item 5: pseudo authentication


@pytest.mark.parametrize("url", ["http://rm:8088/?user.name=monitor", "http://rm:8088/ws?x=1", "http://rm:8088/#top"])
def test_a_url_with_a_query_or_fragment_is_refused_naming_the_key(url):
    with pytest.raises(ConfigError) as e:
        parse_config({"spark": [{"url": url, "discover": "yarn"}]})
    assert "spark[0].url" in str(e.value)
    if "user.name" in url:
        assert "user_name" in str(e.value)


def test_pseudo_authentication_as_hadoops_authentication_filter_wants_it():
    """hadoop.http.authentication.type=simple without anonymous requests: every request needs
    ?user.name= or the hadoop.auth cookie the filter signed; the proxy is behind the same filter.
    The cookie goes back to the RM only, and never one an application set."""
    rec = _recorded()
    with YarnCluster(http_auth="simple", anonymous_allowed=False) as y:
        routes = dict(rec[0][1])
        status, body, ctype, *_ = routes["/api/v1/applications"]
        routes["/api/v1/applications"] = (status, body, ctype, [("Set-Cookie", f"{AUTH_COOKIE}=planted; Path=/")])
        app = y.add_app("etl", routes=routes, user="monitor")
        rm = y.rms[0]
        with running_exporter(_config(y.url)) as (base, _):
            assert value(samples(scrape(base)), "sparkwatch_target_up", kind="spark", target="yarn") == 0
        with running_exporter(_config(y.url, user_name="monitor")) as (base, _):
            for _ in range(2):
                ss = samples(scrape(base))
    assert value(ss, "sparkwatch_target_up", kind="spark", target="yarn") == 1
    assert value(ss, "spark_cluster_applications_scraped", target="yarn") == 1
    assert _app_ids(ss) == [rec[0][0]]
    served = [u for _, u in rm.requests]
    assert served and set(served) == {"monitor"}
    assert app.am.requests and {r.proxy_user for r in app.am.requests} == {"monitor"}
    sent = [c for _, h in rm.received for c in _cookies(h) if c.startswith(AUTH_COOKIE + "=")]
    assert sent, "the signed cookie was not reused"
    assert not [c for c in sent if "planted" in c]
    assert not [c for _, _, h in app.am.received for c in _cookies(h) if c.startswith(AUTH_COOKIE)]


def test_user_name_is_validated():
    with pytest.raises(ConfigError, match=r"spark\[0\]\.user_name: .*must be a user name"):
        parse_config({"spark": [{"url": "http://rm:8088", "discover": "yarn", "user_name": "a b&c"}]})
    with pytest.raises(ConfigError, match=r"give only one of basic_auth, user_name"):
        parse_config({"spark": [{"url": "http://rm:8088", "discover": "yarn", "user_name": "monitor",
                                 "basic_auth": AUTH}]})
    assert parse_config({"spark": [{"url": "http://rm:8088", "discover": "yarn",
                                    "user_name": "monitor"}]}).spark[0].user_name == "monitor"


# ---------------------------------------------------------------- item 6: high availability


def test_ha_the_active_rm_is_found_remembered_and_followed_through_failovers():
    (spark_id, routes), *_ = _recorded()
    with YarnCluster(ha=True) as y:
        rm1, rm2 = y.rms
        app = y.add_app("etl", routes=routes)
        y.failover("rm2")
        with running_exporter(_config([rm1.url, rm2.url], basic_auth=AUTH)) as (base, _):
            ss = samples(scrape(base))
            assert _app_ids(ss) == [spark_id]
            assert value(ss, "spark_cluster_applications_scraped", target="yarn") == 1
            asked_rm1 = len(rm1.received)
            ss = samples(scrape(base))
            assert _app_ids(ss) == [spark_id]
            assert len(rm1.received) == asked_rm1, "the active RM was not remembered"
            # rm2 goes away, rm1 takes over
            y.stop_rm("rm2")
            y.failover("rm1")
            ss = samples(scrape(base))
            assert value(ss, "sparkwatch_target_up", kind="spark", target="yarn") == 1
            assert _app_ids(ss) == [spark_id]
            assert value(ss, "spark_cluster_applications_scraped", target="yarn") == 1
    # both RMs are configured: both got the credentials, the AM (behind the proxy) never did
    for rm in (rm1, rm2):
        assert rm.received and all(_header(h, "Authorization") for _, h in rm.received)
    assert app.am.received and not [h for _, _, h in app.am.received if _header(h, "Authorization")]


def test_ha_a_standby_redirect_outside_the_configured_rms_is_not_followed():
    (spark_id, routes), *_ = _recorded()
    with YarnCluster(ha=True) as y, YarnCluster() as other:
        rm1, rm2 = y.rms
        y.add_app("etl", routes=routes)
        # the standby sends to the active RM, which is not configured here
        with running_exporter(_config(rm2.url, basic_auth=AUTH)) as (base, app):
            ss = samples(scrape(base))
            err = _last_error(app)
        assert value(ss, "sparkwatch_target_up", kind="spark", target="yarn") == 0
        assert "redirect" in err and "standby" in err, err
        assert rm1.received == []
        # a list of RMs: the active one is another configured RM, not where a standby points
        with running_exporter(_config([rm2.url, other.url], basic_auth=AUTH)) as (base, _):
            ss = samples(scrape(base))
        assert value(ss, "sparkwatch_target_up", kind="spark", target="yarn") == 1
        assert rm1.received == []


def test_ha_no_active_rm_among_the_configured_ones_says_so():
    with YarnCluster(ha=True) as y:
        y.failover(None)
        with running_exporter(_config(y.urls)) as (base, app):
            ss = samples(scrape(base))
            err = _last_error(app)
    assert value(ss, "sparkwatch_target_up", kind="spark", target="yarn") == 0
    assert "Can not find any active RM" in err and y.rms[0].url in err and y.rms[1].url in err, err


def test_urls_is_validated():
    with pytest.raises(ConfigError, match=r"spark\[0\]\.urls"):
        parse_config({"spark": [{"urls": ["http://rm1:8088", "ftp://rm2"], "discover": "yarn"}]})
    with pytest.raises(ConfigError, match=r"urls"):
        parse_config({"spark": [{"urls": ["http://rm1:8088", "http://rm2:8088"]}]})  # not discover: yarn
    with pytest.raises(ConfigError, match=r"url"):
        parse_config({"spark": [{"url": "http://rm1:8088", "urls": ["http://rm2:8088"], "discover": "yarn"}]})
    t = parse_config({"spark": [{"urls": ["http://rm1:8088", "http://rm2:8088/"], "discover": "yarn"}]}).spark[0]
    assert t.urls == ["http://rm1:8088", "http://rm2:8088"] and t.url == "http://rm1:8088"
    assert t.display_name() == "rm1:8088"
