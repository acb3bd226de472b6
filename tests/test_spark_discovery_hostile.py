"""Cluster discovery against hostile cluster data: whoever submits an application
chooses its driver UI's address (a standalone master's link, a YARN
trackingUrl), its name, and how many applications there are.

- a discovered UI is fetched only where the policy allows (the manager's own
  proxy, the master's host, or ``discovered_ui_allowed``), and never with the
  manager's credentials; a refused UI is counted, never silently dropped;
- a standalone master's reverse proxy relays a request's Authorization to the
  address the application registered: the master's credentials never go to its
  /proxy paths, however spelt (the stand-in, and a real master of Spark 3.5 and
  4.0 with spark.ui.reverseProxy);
- the master's home page costs bounded bytes and CPU, and no CPU after the
  scrape has answered;
- applications missing from the home page are looked up at most
  ``max_applications`` at a time and within the deadline: the target is
  ``partial``, not down.

The masters are testbed.standalone_master (recorded pages of real masters, and
the reverse proxy as Spark's Jetty ProxyServlet relays), and one real master,
the ResourceManager testbed.yarn (rebuilt from Hadoop's sources: an unmanaged
AM reports whatever tracking URL it registered), the drivers recorded answers of real
drivers.
"""

from __future__ import annotations

import json
import threading
import time
import tracemalloc
from urllib.parse import urlsplit

import pytest

from sparkwatch.collectors.spark.clusters import ui_links_of_master_page
from sparkwatch.collector import Deadline
from sparkwatch.config import ConfigError, parse_config
from testbed.exporter import find, no_scrape_threads_within, running_exporter, samples, scrape, value
from testbed.faulty_http import faulty_server
from testbed.spark import ReplayServer, recording_dirs, routes_from_recording
from testbed.standalone_master import MasterApp, StandaloneMaster, jetty_path
from testbed.yarn import LoopbackServer, Reply, YarnCluster

AUTH = {"username": "manager", "password": "s3cret-of-the-manager"}


def _recorded():
    out = []
    for d in recording_dirs():
        out.append((json.loads((d / "index.json").read_text())["app_id"], routes_from_recording(d)))
    return out


def _other_host(url: str) -> str:
    """The same server under another host name (the manager is at 127.0.0.1)."""
    return url.replace("127.0.0.1", "localhost")


def _target_errors(ss, target, reason):
    found = find(ss, "sparkwatch_target_scrape_errors_total", kind="spark", target=target, reason=reason)
    return found[0][2] if found else 0


def _has_auth(headers) -> bool:
    return any(k.lower() == "authorization" for k, _ in headers)


# ---------------------------------------------------------------- item: where discovered UIs may be


def test_yarn_tracking_urls_off_the_rm_proxy_are_refused_and_counted():
    """An unmanaged AM registers whatever tracking URL it likes, and the RM reports it as is."""
    (spark_id, routes), *_ = _recorded()
    with ReplayServer(routes) as driver, faulty_server("ok") as elsewhere, YarnCluster() as y:
        first = y.add_app("through-the-proxy", routes=routes)
        rm = y.rms[0]
        port, rm_port = elsewhere.server_address[1], rm.server.port
        hostile = [
            _other_host(elsewhere.url) + "/",  # another host
            f"http://127.0.0.1:{port}/",  # the RM's host, another port
            f"{rm.url}/proxy/{first.app_id}/",  # the RM proxy, another application
            f"http://127.0.0.1:{rm_port}@localhost:{port}/",  # userinfo
            f"http://localhost:{port}\\@127.0.0.1/",
            "javascript:alert(1)",  # AppInfo makes it http://javascript:alert(1)
        ]
        for url in hostile:
            y.add_app("hostile", unmanaged=True, tracking_url=url)
        cfg = {"exporter": {"scrape_timeout": 10},
               "spark": [{"name": "yarn", "url": y.url, "discover": "yarn", "basic_auth": AUTH}]}
        with running_exporter(cfg) as (base, _):
            ss = samples(scrape(base))
        assert elsewhere.requests == [] and driver.requests == []
    assert value(ss, "sparkwatch_target_up", kind="spark", target="yarn") == 1
    assert value(ss, "spark_cluster_applications", target="yarn") == 1 + len(hostile)
    assert value(ss, "spark_cluster_rejected_uis", target="yarn") == len(hostile)
    assert value(ss, "spark_cluster_applications_scraped", target="yarn") == 1
    assert [lab["app_id"] for n, lab, _ in ss if n == "spark_app_info"] == [spark_id]
    assert _target_errors(ss, "yarn", "partial") >= 1
    # the RM and its own proxy got the RM's credentials (it is the RM); the AM behind it did not
    assert rm.received and all(_has_auth(h) for _, h in rm.received)
    assert first.am.received and not [h for _, _, h in first.am.received if _has_auth(h)]


def test_yarn_ui_elsewhere_is_read_when_allowed_and_never_with_the_managers_credentials():
    (spark_id, routes), *_ = _recorded()
    with faulty_server("body") as driver, YarnCluster() as y:
        driver.body = routes["/api/v1/applications"][1]  # a quiet application: no jobs, stages, executors
        y.add_app("a", unmanaged=True, tracking_url=_other_host(driver.url) + "/")
        port = driver.server_address[1]
        cfg = {"exporter": {"scrape_timeout": 10},
               "spark": [{"name": "yarn", "url": y.url, "discover": "yarn", "basic_auth": AUTH,
                          "discovered_ui_allowed": [f"http://localhost:{port}"]}]}
        with running_exporter(cfg) as (base, _):
            ss = samples(scrape(base))
        assert driver.requests, "the allowed UI was not read"
        assert all("Authorization" not in h for _, h in driver.requests), driver.requests
    assert value(ss, "spark_cluster_rejected_uis", target="yarn") == 0
    assert value(ss, "spark_cluster_applications_scraped", target="yarn") == 1
    assert find(ss, "spark_app_info", target="yarn", app_id=spark_id)


def test_yarn_redirects_of_a_discovered_ui_only_where_discovered_uis_may_be_and_without_credentials():
    """An unmanaged AM's URL (allowed) that redirects to a driver elsewhere: followed only
    where a discovered UI may be; the RM's credentials never follow."""
    (spark_id, routes), *_ = _recorded()
    with ReplayServer(routes) as driver, YarnCluster() as y:
        elsewhere = _other_host(driver.url)
        hop = LoopbackServer(lambda req: Reply(302, b"", None, [("Location", elsewhere + req.raw_path)])).start()
        try:
            y.add_app("a", unmanaged=True, tracking_url=hop.url + "/")
            cfg = {"exporter": {"scrape_timeout": 10},
                   "spark": [{"name": "yarn", "url": y.url, "discover": "yarn", "basic_auth": AUTH,
                              "discovered_ui_allowed": [hop.url]}]}
            with running_exporter(cfg) as (base, _):
                ss = samples(scrape(base))
            # the AM's URL is allowed, but not the driver it redirects to
            assert driver.requests == []
            assert value(ss, "spark_cluster_applications_scraped", target="yarn") == 0
            assert _target_errors(ss, "yarn", "partial") >= 1
            cfg["spark"][0]["discovered_ui_allowed"] = [hop.url, elsewhere]
            with running_exporter(cfg) as (base, _):
                ss = samples(scrape(base))
            assert find(ss, "spark_app_info", target="yarn", app_id=spark_id)
        finally:
            hop.stop()
        assert driver.requests
    # the RM got its credentials; the driver's origin is not the target's (the previous test
    # shows a driver elsewhere never gets them)
    assert all(_has_auth(h) for _, h in y.rms[0].received)


def test_standalone_links_off_the_masters_host_are_refused_unless_allowed_and_get_no_credentials():
    rec = _recorded()
    with ReplayServer(rec[0][1]) as on_host, faulty_server("ok") as elsewhere, StandaloneMaster() as m:
        m.apps = [
            # a driver in client mode on the master's host, another port: allowed by default
            MasterApp("app-20261201000000-0000", "on-host", ui=on_host.url),
            # a driver on another host: refused unless discovered_ui_allowed says so
            MasterApp("app-20261201000000-0001", "elsewhere", ui=_other_host(elsewhere.url)),
            # not a UI at all
            MasterApp("app-20261201000000-0002", "odd", ui=f"{on_host.url}/metrics?x=1"),
        ]
        cfg = {"exporter": {"scrape_timeout": 10},
               "spark": [{"name": "m", "url": m.url, "discover": "standalone", "basic_auth": AUTH}]}
        with running_exporter(cfg) as (base, _):
            ss = samples(scrape(base))
        assert elsewhere.requests == []
        assert value(ss, "sparkwatch_target_up", kind="spark", target="m") == 1
        assert value(ss, "spark_cluster_rejected_uis", target="m") == 2
        assert value(ss, "spark_cluster_applications_scraped", target="m") == 1
        assert find(ss, "spark_app_info", target="m", app_id=rec[0][0])
        assert _target_errors(ss, "m", "partial") >= 1

        cfg["spark"][0]["discovered_ui_allowed"] = ["http://localhost:*"]
        with running_exporter(cfg) as (base, _):
            ss = samples(scrape(base))
        assert value(ss, "spark_cluster_rejected_uis", target="m") == 1
        assert value(ss, "spark_cluster_applications_scraped", target="m") == 2
        assert elsewhere.requests
        # the master got its credentials; no driver UI did (another origin, even on the same host)
        assert all("Authorization" not in h for _, h in elsewhere.requests)
    assert m.requests and all("Authorization" in h for _, h in m.requests)


class _RecordingDriver:
    """A driver UI answering from recorded routes, keeping every request's path and headers
    (``received``); a path of ``redirects`` is answered with a 302 to the URL it maps to."""

    def __init__(self, routes, redirects=None):
        self.routes, self.redirects = routes, dict(redirects or {})
        self.received = []
        self.server = LoopbackServer(self._handle)

    def _handle(self, req):
        self.received.append((req.raw_path, list(req.headers)))
        if req.uri in self.redirects:
            return Reply(302, b"", "text/plain", [("Location", self.redirects[req.uri])])
        route = self.routes.get(req.uri)
        if route is None:
            return Reply(404, b"no such path\n", "text/plain")
        status, body, ctype = route[:3]
        return Reply(status, body() if callable(body) else body, ctype)

    def __enter__(self):
        self.server.start()
        self.url = self.server.url
        return self

    def __exit__(self, *exc):
        self.server.stop()


def _credentials(kind, tmp_path):
    if kind == "basic_auth":
        return {"basic_auth": AUTH}
    token = tmp_path / "token"
    token.write_text("token-of-the-manager\n")
    token.chmod(0o600)
    return {"bearer_token_file": str(token)}


def _own_pages(m):
    """The master's own requests (those its reverse proxy does not relay, as Jetty routes paths)."""
    return [(p, h) for p, h in m.requests if not jetty_path(urlsplit(p).path).startswith("/proxy")]


@pytest.mark.parametrize("credentials", ["basic_auth", "bearer_token"])
def test_standalone_reverse_proxy_relays_to_a_driver_that_never_gets_the_masters_credentials(credentials, tmp_path):
    """spark.ui.reverseProxy: the master's /proxy/<id> relays every request header but the hop-by-hop
    ones (Jetty's ProxyServlet) to the address the application registered: whoever submits an
    application would receive the master's credentials. They stay off the proxy paths."""
    rec = _recorded()
    app_id = "app-20261201000000-0000"
    with _RecordingDriver(rec[0][1]) as driver, StandaloneMaster(reverse_proxy=True) as m:
        m.apps = [MasterApp(app_id, "proxied", ui=driver.url)]
        cfg = {"exporter": {"scrape_timeout": 10},
               "spark": [{"name": "m", "url": m.url, "discover": "standalone", **_credentials(credentials, tmp_path)}]}
        with running_exporter(cfg) as (base, _):
            ss = samples(scrape(base))
    # read through the master's proxy: the application's series are there
    assert value(ss, "spark_cluster_applications_scraped", target="m") == 1
    assert find(ss, "spark_app_info", target="m", app_id=rec[0][0])
    assert m.relayed and all(u.startswith(driver.url + "/") for u, _ in m.relayed)
    # what the proxy relayed reached the driver, and nothing of it was a credential
    assert driver.received and all(p.startswith(("/api/v1/", "/metrics/json")) for p, _ in driver.received)
    assert not any(_has_auth(h) for _, h in driver.received)
    assert not any(_has_auth(h.items()) for p, h in m.requests if p.startswith("/proxy/"))
    # the master's own pages got them
    own = _own_pages(m)
    assert {urlsplit(p).path for p, _ in own} >= {"/json/", "/"}
    assert all(_has_auth(h.items()) for _, h in own)


@pytest.mark.parametrize("spelling", ["/proxy;jsessionid=1/{id}", "/json/..;x/proxy/{id}"])
def test_no_spelling_of_the_proxy_path_gets_the_credentials(spelling):
    """A driver behind the proxy redirects to its own proxy path spelt otherwise: Jetty drops path
    parameters before it routes, so /proxy;x/<id> and /json/..;x/proxy/<id> are the proxy too (a
    spelling requests would change when preparing, /json/%2e%2e/proxy, is refused before it is sent).
    The redirect is followed (the master's host), without the credentials."""
    rec = _recorded()
    app_id = "app-20261201000000-0000"
    with StandaloneMaster(reverse_proxy=True) as m:
        back = m.url + spelling.format(id=app_id) + "/again/api/v1/applications"
        routes = dict(rec[0][1])
        routes["/again/api/v1/applications"] = routes["/api/v1/applications"]
        with _RecordingDriver(routes, redirects={"/api/v1/applications": back}) as driver:
            m.apps = [MasterApp(app_id, "proxied", ui=driver.url)]
            cfg = {"exporter": {"scrape_timeout": 10},
                   "spark": [{"name": "m", "url": m.url, "discover": "standalone", "basic_auth": AUTH}]}
            with running_exporter(cfg) as (base, _):
                scrape(base)
    assert any(p.startswith("/again/") for p, _ in driver.received)  # the redirect was followed
    assert not any(_has_auth(h) for _, h in driver.received)
    assert all(_has_auth(h.items()) for _, h in _own_pages(m))


def test_credentials_through_reverse_proxy_is_an_explicit_choice(tmp_path):
    """With an authenticating front before the master that needs them on /proxy/ too (and strips
    them before the master): the key sends them there, and the driver gets them if the front does not."""
    rec = _recorded()
    app_id = "app-20261201000000-0000"
    with _RecordingDriver(rec[0][1]) as driver, StandaloneMaster(reverse_proxy=True) as m:
        m.apps = [MasterApp(app_id, "proxied", ui=driver.url)]
        cfg = {"exporter": {"scrape_timeout": 10},
               "spark": [{"name": "m", "url": m.url, "discover": "standalone", "basic_auth": AUTH,
                          "credentials_through_reverse_proxy": True}]}
        with running_exporter(cfg) as (base, _):
            ss = samples(scrape(base))
    assert value(ss, "spark_cluster_applications_scraped", target="m") == 1
    assert all(_has_auth(h.items()) for _, h in m.requests)
    assert driver.received and all(_has_auth(h) for _, h in driver.received)
    for discover in ("ui", "yarn"):
        with pytest.raises(ConfigError, match=r"spark\[0\].*credentials_through_reverse_proxy"):
            parse_config({"spark": [{"url": "http://m:8080", "discover": discover,
                                     "credentials_through_reverse_proxy": True}]})


def test_a_link_to_another_applications_proxy_path_is_refused():
    with StandaloneMaster() as m:
        m.apps = [MasterApp("app-20261201000000-0000", "proxied", ui="/proxy/app-20261201000000-0000"),
                  MasterApp("app-20261201000000-0001", "other", ui="/proxy/app-20261201000000-0000")]
        cfg = {"exporter": {"scrape_timeout": 10},
               "spark": [{"name": "m", "url": m.url, "discover": "standalone", "basic_auth": AUTH}]}
        with running_exporter(cfg) as (base, _):
            ss = samples(scrape(base))
    # the first is read through the master's proxy (404 from this master without reverse proxy:
    # partial), the second names another application's proxy path and is refused
    proxied = [p for p, _ in m.requests if p.startswith("/proxy/")]
    assert proxied and all(p.startswith("/proxy/app-20261201000000-0000/") for p in proxied)
    assert value(ss, "spark_cluster_rejected_uis", target="m") == 1


def test_which_paths_a_server_may_route_to_its_proxy():
    from sparkwatch.urlpattern import routed_under

    for path in ("/proxy", "/proxy/", "/proxy/app-1/jobs", "/json/../proxy/a", "/json/%2e%2e/proxy/a",
                 "/proxy;x=1/a", "/%70roxy/a", "/PROXY/a", "//proxy/a", "/x/%2E%2E/proxy", "/proxy%2Fa",
                 "/a/%252e%252e/proxy/b", "/a\\..\\proxy/b", "/json/..;x/proxy/a"):
        assert routed_under("http://m:8080" + path, "/proxy"), path
    for path in ("/", "/json/", "/app/", "/proxyx/a", "/app/proxy/a", "/json/proxy"):
        assert not routed_under("http://m:8080" + path, "/proxy"), path
    assert routed_under("http://front/spark/proxy/a", "/spark/proxy")
    assert not routed_under("http://front/spark/json/", "/spark/proxy")
    assert not routed_under("http://front/proxy/a", "/spark/proxy")


def test_discovered_ui_allowed_is_validated_and_only_with_discover():
    with pytest.raises(ConfigError, match=r"spark\[0\]\.discovered_ui_allowed"):
        parse_config({"spark": [{"url": "http://m:8080", "discover": "standalone",
                                 "discovered_ui_allowed": ["http://x:80*"]}]})
    with pytest.raises(ConfigError, match=r"discovered_ui_allowed"):
        parse_config({"spark": [{"url": "http://m:4040", "discovered_ui_allowed": ["http://x:4040"]}]})
    cfg = parse_config({"spark": [{"url": "http://m:8088", "discover": "yarn",
                                   "discovered_ui_allowed": ["http://10.1.2.*:*"]}]})
    assert cfg.spark[0].discovered_ui_allowed == ["http://10.1.2.*:*"]


# ---------------------------------------------------------------- item: the home page's cost

PAGE_CPU_BOUND = 1.0  # seconds of CPU after the answer; the unbounded parse burnt 7 s and more


def _cpu_after_answer(base: str, timeout_header: float):
    """Scrape; return (samples, seconds to answer, process CPU seconds from the answer
    until the scrape's work has ended)."""
    t0 = time.monotonic()
    text = scrape(base, timeout_header=timeout_header)
    elapsed = time.monotonic() - t0
    cpu0 = time.process_time()
    assert no_scrape_threads_within(120), "the scrape's work did not end"
    return samples(text), elapsed, time.process_time() - cpu0


@pytest.mark.parametrize("page", ["lt", "open_tag", "rows"])
def test_a_hostile_master_home_page_costs_no_cpu_after_the_answer(page):
    bodies = {
        "lt": lambda: b"<" * (16 * 1024 * 1024),  # 16 MiB of '<'
        "open_tag": lambda: b'<a href="' + b"x" * (15 * 1024 * 1024),  # a tag that never ends
        "rows": lambda: b'<tr><td><a href="app/?appId=app-1">x</a><a href="">' * 300_000,
    }
    with StandaloneMaster() as m:
        m.apps = [MasterApp("app-1", "a", ui="")]
        m.home_body = bodies[page]()
        cfg = {"exporter": {"scrape_timeout": 30, "timeout_offset": 0},
               "spark": [{"name": "m", "url": m.url, "discover": "standalone"}]}
        with running_exporter(cfg) as (base, _):
            ss, elapsed, cpu = _cpu_after_answer(base, timeout_header=2)
    assert elapsed < 2 + 1.0, f"answered after {elapsed:.1f}s"
    assert cpu < PAGE_CPU_BOUND, f"{cpu:.2f}s of CPU after the scrape answered"
    # whatever the page, the target answered: down with a reason, or up and partial
    up = value(ss, "sparkwatch_target_up", kind="spark", target="m")
    reasons = {lab["reason"] for n, lab, v in ss if n == "sparkwatch_target_scrape_errors_total" and v}
    assert reasons and "internal" not in reasons
    if up == 0:
        assert reasons <= {"timeout", "invalid_response"}


def test_the_home_page_parse_keeps_bounded_memory_and_stops_at_the_deadline():
    rows = '<tr><td><a href="app/?appId=app-1">x</a></td><td><a href="http://d:4040">n</a></td></tr>'
    page = rows * 40_000 + '<a href="x">' + "y" * 2_000_000  # 3.6 MB of rows, a link 2 MB long
    tracemalloc.start()
    try:
        links = ui_links_of_master_page(page, "http://m/", wanted={"app-2"}, deadline=Deadline(60))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert links == {}
    assert peak < 8 * 1024 * 1024, f"peak {peak / 1e6:.0f} MB for a {len(page) / 1e6:.0f} MB page"
    # an expired deadline stops the parse (a timeout), whatever the page
    from sparkwatch.collector import TargetError

    with pytest.raises(TargetError) as e:
        ui_links_of_master_page("<" * 1_000_000, "http://m/", deadline=Deadline(0))
    assert e.value.reason == "timeout"


# ---------------------------------------------------------------- item: many hidden applications


def _hidden_apps(n, on_home_page):
    return [MasterApp(f"app-20261201000000-{i:04d}", f"batch-{i}", ui="", on_home_page=on_home_page)
            for i in range(n)]


@pytest.mark.parametrize("on_home_page", [True, False], ids=["listed-without-ui", "missing-from-home-page"])
def test_three_thousand_hidden_applications_leave_the_target_partial_not_down(on_home_page):
    rec = _recorded()
    with ReplayServer(rec[0][1]) as d0, ReplayServer(rec[1][1]) as d1, StandaloneMaster() as m:
        m.apps = ([MasterApp("app-20261130000000-0000", "seen-0", ui=d0.url),
                   MasterApp("app-20261130000000-0001", "seen-1", ui=d1.url)]
                  + _hidden_apps(3000, on_home_page))
        cfg = {"exporter": {"scrape_timeout": 5, "timeout_offset": 0},
               "spark": [{"name": "m", "url": m.url, "discover": "standalone", "max_applications": 50}]}
        with running_exporter(cfg) as (base, _):
            ss = samples(scrape(base, timeout_header=5))
        lookups = [p for p, _ in m.requests if p.startswith("/app/")]
    assert value(ss, "sparkwatch_target_up", kind="spark", target="m") == 1
    assert value(ss, "spark_cluster_applications", target="m") == 3002
    assert value(ss, "spark_cluster_applications_scraped", target="m") == 2
    assert sorted(lab["app_id"] for n, lab, _ in ss if n == "spark_app_info") == sorted(a for a, _ in rec[:2])
    assert _target_errors(ss, "m", "partial") >= 1
    assert _target_errors(ss, "m", "timeout") == 0
    if on_home_page:
        # the home page says they have no UI (an empty link): nothing to look up
        assert lookups == []
    else:
        assert 0 < len(lookups) <= 50


# ---------------------------------------------------------------- a real master's reverse proxy


class _RecordingRelay:
    """A server at ``host``:``port`` that keeps every request's path and headers (``received``)
    and answers it from ``upstream`` (the real driver UI on 127.0.0.1)."""

    def __init__(self, host: str, port: int, upstream: str):
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        from testbed.yarn import fetch

        relay = self
        self.received = []

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):  # noqa: N802
                relay.received.append((self.path, list(self.headers.items())))
                try:
                    status, got, body = fetch(upstream + self.path, [("Accept", "application/json")], 20.0,
                                              follow=False)
                except OSError:
                    status, got, body = 502, [], b"bad gateway"
                self.send_response(status)
                for k, v in got:
                    if k.lower() in ("content-type", "location"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.mark.spark
@pytest.mark.slow
@pytest.mark.parametrize("version", ["4.0", "3.5"])
def test_a_real_masters_reverse_proxy_relays_authorization_and_the_driver_never_gets_the_masters(version):
    """A real master with spark.ui.reverseProxy=true and an application that registered
    127.0.0.3:<its UI port> as its UI (spark.driver.host), where a recorder relays to the real
    driver UI: the master's proxy passes Authorization on (the premise), and sparkwatch, with
    the master's basic auth, reads the application through the proxy without it."""
    import requests

    from testbed.cluster import standalone_cluster
    from testbed.spark import spark_app
    from tests.helpers import spark_python

    spark_python(version)  # skips when that pyspark is not installed
    proxied = {"spark.driver.host": "127.0.0.3", "spark.driver.bindAddress": "127.0.0.3"}
    with standalone_cluster(version, master_conf={"spark.ui.reverseProxy": "true"}) as c, \
            spark_app(version, master=c.master_url, app_name="proxied", stream=False, conf=proxied) as app, \
            _RecordingRelay("127.0.0.3", app.port, app.url) as driver:
        r = requests.get(f"{c.web_url}/proxy/{app.app_id}/api/v1/applications",
                         headers={"Authorization": "Basic bm90OnRoaXM="}, timeout=30)
        assert r.status_code == 200 and app.app_id in r.text, c.log_tail()
        assert [h for _, h in driver.received if _has_auth(h)], "the master's proxy kept Authorization back"
        driver.received.clear()

        cfg = {"exporter": {"scrape_timeout": 30},
               "spark": [{"name": "m", "url": c.web_url, "discover": "standalone", "basic_auth": AUTH}]}
        with running_exporter(cfg) as (base, _):
            ss = samples(scrape(base, timeout_header=30))
    assert value(ss, "spark_cluster_applications_scraped", target="m") == 1
    assert find(ss, "spark_app_info", target="m", app_id=app.app_id)
    assert driver.received and not any(_has_auth(h) for _, h in driver.received)
