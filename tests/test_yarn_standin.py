"""The contract of testbed/yarn.py, the YARN ResourceManager stand-in: each test pins one
behaviour of Hadoop's, with plain HTTP requests, to the exact status, headers, cookies and body
Hadoop's code produces (the source file is named in each test; the stand-in's docstrings quote
the code paths). The exporter is not involved here.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import requests

from testbed import kerberos
from testbed.yarn import (CLUSTER_TIMESTAMP, HTML, JSON, PROXY_ADDRESS, STATIC_USER, LoopbackServer, Reply,
                                 YarnCluster, moved_page, not_found_page, warning_page)
from testbed.procs import free_port

SPARK_ROUTES = {
    "/api/v1/applications": (200, b'[{"id": "app-1"}]', "application/json"),
    "/metrics/json": (302, b"", "text/html", [("Location", "/metrics/json/")]),
    "/metrics/json/": (200, b'{"gauges": {}}', "application/json"),
    "/cookies": (200, b"ok", "text/plain", [("Set-Cookie", "a=1"), ("Set-Cookie", "b=2"), ("X-Spark", "yes")]),
}
#: the YARN proxy's warning page as DataDog recorded it (tests/data/peer/ORIGIN.md)
WARNING_FIXTURE = Path(__file__).resolve().parent / "data" / "peer" / "datadog" / "html_warning_page"


def get(url, **kw):
    kw.setdefault("allow_redirects", False)
    kw.setdefault("timeout", 30)
    return requests.get(url, **kw)


def apps_of(r):
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"] == JSON
    return (r.json()["apps"] or {}).get("app", [])


# --- the REST API: RMWebServices.getApps, AppInfo ------------------------------------------------------------------

def test_app_info_fields_and_tracking_url_by_state():
    """AppInfo (trackingUrlIsNotReady, trackingUI) and RMAppAttemptImpl.getTrackingUrl (proxied for a
    managed AM, original for an unmanaged one; the RM's app page once FAILED or KILLED)."""
    with YarnCluster() as y:
        accepted = y.add_app("queued", state="ACCEPTED")
        running = y.add_app("etl", routes=SPARK_ROUTES, user="alice")
        unmanaged = y.add_app("client-mode", unmanaged=True, driver="http://127.0.0.1:4040", am_filter=False)
        bare = y.add_app("no-ui", unmanaged=True)  # an unmanaged AM that registered no URL
        mr_host = y.add_app("mr", application_type="MAPREDUCE", tracking_url="127.0.0.1:33000")  # no scheme
        done = y.add_app("done", state="FINISHED", final_tracking_url="http://127.0.0.1:18080/history/app-1/1")
        failed = y.add_app("failed", state="FAILED")
        killed = y.add_app("killed", state="KILLED", unmanaged=True, tracking_url="http://127.0.0.1:4041")
        apps = {a["id"]: a for a in apps_of(get(y.url + "/ws/v1/cluster/apps"))}
    a = apps[accepted.app_id]
    assert a["trackingUI"] == "UNASSIGNED" and "trackingUrl" not in a
    a = apps[running.app_id]
    assert list(a)[:9] == ["id", "user", "name", "queue", "state", "finalStatus", "progress", "trackingUI",
                           "trackingUrl"]
    assert (a["user"], a["state"], a["finalStatus"], a["progress"]) == ("alice", "RUNNING", "UNDEFINED", 10.0)
    assert a["trackingUI"] == "ApplicationMaster"
    assert a["trackingUrl"] == f"{y.url}/proxy/{running.app_id}/"
    assert a["applicationType"] == "SPARK" and a["unmanagedApplication"] is False
    assert a["finishedTime"] == 0 and a["startedTime"] > CLUSTER_TIMESTAMP and a["elapsedTime"] > 0
    assert a["amHostHttpAddress"] == "localhost:8042" and a["clusterId"] == CLUSTER_TIMESTAMP
    a = apps[unmanaged.app_id]
    assert a["trackingUrl"] == "http://127.0.0.1:4040" and a["unmanagedApplication"] is True
    assert "amHostHttpAddress" not in a and "amNodeLabelExpression" not in a  # no master container
    assert apps[bare.app_id]["trackingUrl"] == "http://N/A"  # WebAppUtils.getURLWithScheme of "N/A"
    assert apps[mr_host.app_id]["trackingUrl"] == f"{y.url}/proxy/{mr_host.app_id}/"
    a = apps[done.app_id]
    assert (a["trackingUI"], a["finalStatus"], a["progress"]) == ("History", "SUCCEEDED", 100.0)
    assert a["trackingUrl"] == f"{y.url}/proxy/{done.app_id}/"  # still the proxy: it redirects to the history
    assert a["finishedTime"] > a["startedTime"] and a["elapsedTime"] == a["finishedTime"] - a["startedTime"]
    assert a["allocatedMB"] == -1 and a["runningContainers"] == -1
    a = apps[failed.app_id]
    assert (a["trackingUI"], a["finalStatus"]) == ("History", "FAILED")
    assert a["trackingUrl"] == f"{y.url}/cluster/app/{failed.app_id}"
    a = apps[killed.app_id]
    assert (a["finalStatus"], a["trackingUrl"]) == ("KILLED", f"{y.url}/cluster/app/{killed.app_id}")


def test_states_filters_as_parse_queries_reads_them():
    """WebServices.parseQueries: comma-separated, trimmed, any case; ``states`` may repeat and the
    deprecated ``state`` adds to it (ApplicationsRequestBuilder.withStateQuery)."""
    with YarnCluster() as y:
        ids = {s: y.add_app(s.lower(), state=s).app_id for s in ("ACCEPTED", "RUNNING", "FINISHED", "KILLED")}

        def listed(query):
            return sorted(a["state"] for a in apps_of(get(f"{y.url}/ws/v1/cluster/apps?{query}")))

        assert listed("") == ["ACCEPTED", "FINISHED", "KILLED", "RUNNING"]
        assert listed("states=running") == ["RUNNING"]
        assert listed("states=Running,%20accepted%20") == ["ACCEPTED", "RUNNING"]
        assert listed("states=RUNNING&states=KILLED") == ["KILLED", "RUNNING"]
        assert listed("state=FINISHED&states=RUNNING") == ["FINISHED", "RUNNING"]
        assert listed("states=,RUNNING,,") == ["RUNNING"]
        assert listed("states=NEW") == []
        assert listed("limit=2") == ["ACCEPTED", "RUNNING"]  # the first ones, in submission order
        assert ids


def test_an_unknown_state_is_a_400_remote_exception():
    """parseQueries' BadRequestException through GenericExceptionHandler (Jersey 1: the message is
    the WebApplicationException's, "java.lang.Exception: ..."), TestRMWebServicesApps.testAppsQueryStatesInvalid."""
    with YarnCluster() as y:
        y.add_app("etl")
        for query in ("states=RUNNING,INVALID_test", "state=INVALID_test"):
            r = get(f"{y.url}/ws/v1/cluster/apps?{query}")
            assert r.status_code == 400
            assert r.headers["Content-Type"] == "application/json; charset=utf-8"
            assert r.json() == {"RemoteException": {
                "exception": "BadRequestException",
                "message": "java.lang.Exception: Invalid application-state INVALID_test specified. It should be one of "
                           "[NEW, NEW_SAVING, SUBMITTED, ACCEPTED, RUNNING, FINISHED, FAILED, KILLED]",
                "javaClassName": "org.apache.hadoop.yarn.webapp.BadRequestException"}}
        r = get(f"{y.url}/ws/v1/cluster/apps?limit=0")
        assert r.status_code == 400
        assert r.json()["RemoteException"]["message"] == "java.lang.Exception: limit value must be greater then 0"


def test_application_types_filter_and_a_gateway_that_drops_it():
    """ClientRMService.getApplications matches the lower-cased type against parseQueries' lower-cased
    set; ``ignore_application_types`` answers every type, as a gateway that drops the filter."""
    for ignore in (False, True):
        with YarnCluster(ignore_application_types=ignore) as y:
            y.add_app("spark")
            y.add_app("mr", application_type="MAPREDUCE")
            y.add_app("tez", application_type="TEZ")
            got = sorted(a["applicationType"] for a in apps_of(
                get(f"{y.url}/ws/v1/cluster/apps?applicationTypes=spark,Tez&states=RUNNING")))
        assert got == (["MAPREDUCE", "SPARK", "TEZ"] if ignore else ["SPARK", "TEZ"])


@pytest.mark.parametrize("major, empty", [(3, {}), (2, None)])
def test_no_application_matches(major, empty):
    """Hadoop 3: ``{"apps":{}}`` (TestRMWebServicesApps.testAppsQueryStatesNone); Hadoop 2: ``{"apps":null}``."""
    with YarnCluster(hadoop_major=major) as y:
        y.add_app("etl", state="ACCEPTED")
        r = get(f"{y.url}/ws/v1/cluster/apps?states=RUNNING")
    assert r.status_code == 200 and r.json() == {"apps": empty}


# --- the web proxy: WebAppProxyServlet, ProxyUtils -----------------------------------------------------------------

def test_the_proxy_fetches_the_am_itself():
    """proxyLink: from the proxy host's address, only PASS_THROUGH_HEADERS (no Authorization, no
    cookies of the client) plus ``proxy-user`` (StaticUserWebFilter: dr.who); the AM's redirects
    followed by the proxy (never sent to the client); the AM's headers copied with setHeader (the
    last Set-Cookie wins); no warning without security, no check cookie."""
    with YarnCluster() as y:
        app = y.add_app("etl", routes=SPARK_ROUTES)
        base = f"{y.url}/proxy/{app.app_id}"
        r = get(base + "/api/v1/applications?status=running", headers={
            "Accept": "application/json", "Authorization": "Basic dTpw", "X-Custom": "1", "Cookie": "session=s"})
        assert r.status_code == 200 and r.json() == [{"id": "app-1"}]
        assert "Set-Cookie" not in r.headers
        seen = app.am.requests[-1]
        assert seen.path == "/api/v1/applications?status=running"
        assert (seen.remote_addr, seen.proxy_user) == (PROXY_ADDRESS, STATIC_USER)
        r = get(base + "/metrics/json")
        assert r.status_code == 200 and r.json() == {"gauges": {}} and not r.history
        assert [q.path for q in app.am.requests[-2:]] == ["/metrics/json", "/metrics/json/"]
        r = get(base + "/cookies")
        assert r.headers["Set-Cookie"] == "b=2" and r.headers["X-Spark"] == "yes"
        r = get(base + "/nothing-here")
        assert r.status_code == 404  # the AM's own status


def test_the_headers_the_proxy_passes_on():
    """PASS_THROUGH_HEADERS reach the AM; Authorization, the client's cookies and other headers do not."""
    with YarnCluster() as y:
        with _EchoServer() as echo:
            app = y.add_app("etl", driver=echo.url)
            get(f"{y.url}/proxy/{app.app_id}/x", headers={
                "Accept": "text/plain", "Accept-Language": "fr", "User-Agent": "probe/1", "Authorization": "Basic dTpw",
                "X-Custom": "1", "Cookie": "session=s"})
            seen = echo.last_headers
    assert seen["Accept"] == "text/plain" and seen["Accept-Language"] == "fr" and seen["User-Agent"] == "probe/1"
    assert "Authorization" not in seen and "X-Custom" not in seen
    assert seen["Cookie"] == f"proxy-user={STATIC_USER}"


def test_the_warning_page_only_with_security_and_not_for_the_owner():
    """warnUserPage: with security on, a caller who is not the owner gets the page (200, the text
    Hadoop renders, a link with proxyapproved=true) and ``checked_<app>=false``; the AM is not
    contacted. Without security, or for the owner, the AM's answer comes straight back."""
    with YarnCluster(security=True, http_auth="simple") as y:
        app = y.add_app("etl", routes=SPARK_ROUTES, user="alice")
        path = f"/proxy/{app.app_id}/api/v1/applications"
        r = get(f"{y.url}{path}?user.name=bob&status=running")
        assert r.status_code == 200 and r.headers["Content-Type"] == HTML
        assert r.text == warning_page(f"{path}?user.name=bob&status=running&proxyapproved=true", "alice")
        assert re.fullmatch(rf"checked_{app.app_id}=false; Path=/proxy/{app.app_id}; Expires=[A-Z][a-z]{{2}}, "
                            r"\d\d-[A-Z][a-z]{2}-\d{4} \d\d:\d\d:\d\d GMT; Max-Age=7200; HttpOnly",
                            r.raw.headers.getlist("Set-Cookie")[0])
        assert not app.am.requests and y.rms[0].warned == 1
        r = get(f"{y.url}{path}?user.name=alice")  # the owner
        assert r.status_code == 200 and r.json() == [{"id": "app-1"}]
        assert not [c for c in r.raw.headers.getlist("Set-Cookie") if c.startswith("checked_")]
        assert app.am.requests[-1].proxy_user == "alice"
    with YarnCluster(security=False, http_auth="simple") as y:
        app = y.add_app("etl", routes=SPARK_ROUTES, user="alice")
        r = get(f"{y.url}/proxy/{app.app_id}/api/v1/applications?user.name=bob")
        assert r.json() == [{"id": "app-1"}] and "checked_" not in r.headers.get("Set-Cookie", "")


def test_the_warning_page_is_what_hadoop_renders():
    """The same text as the warning page DataDog recorded from a real proxy."""
    recorded = WARNING_FIXTURE.read_text()
    assert warning_page("$REDIRECT_URL$", "hadoop") == recorded


def test_the_check_cookie_semantics():
    """methodAction: with security, ``checked_<app>`` present = warned, its value true or
    ``proxyapproved=true`` = approved; only warned AND approved passes, and then the answer sets
    ``checked_<app>=true`` (HttpOnly, Path=/proxy/<app>). ``proxyapproved=true`` alone (never warned)
    shows the warning again."""
    with YarnCluster(security=True) as y:
        app = y.add_app("etl", routes=SPARK_ROUTES, user="alice")
        url = f"{y.url}/proxy/{app.app_id}/api/v1/applications"
        name = f"checked_{app.app_id}"

        def ask(query="", cookie=None):
            r = get(url + query, headers={"Cookie": f"{name}={cookie}"} if cookie else {})
            set_cookie = [c for c in r.raw.headers.getlist("Set-Cookie") if c.startswith(name)]
            return ("warning" if r.text.startswith("<html>\n  <h1>\n    WARNING") else r.json()), set_cookie

        page, sc = ask()
        assert page == "warning" and sc[0].startswith(f"{name}=false; Path=/proxy/{app.app_id}; ")
        assert ask("?proxyapproved=true")[0] == "warning"
        assert ask(cookie="false")[0] == "warning"
        page, sc = ask("?proxyapproved=true", cookie="false")
        assert page == [{"id": "app-1"}] and sc[0].startswith(f"{name}=true; Path=/proxy/{app.app_id}; ")
        assert sc[0].endswith("; Max-Age=7200; HttpOnly")
        page, sc = ask(cookie="true")
        assert page == [{"id": "app-1"}] and sc[0].startswith(f"{name}=true;")
        # the way a browser goes: warning, click, then the cookie alone
        s = requests.Session()
        r = s.get(url, timeout=30)
        link = re.search(r'href="([^"]+)"', r.text).group(1).replace("&amp;", "&")
        assert s.get(y.url + link, timeout=30).json() == [{"id": "app-1"}]
        assert s.get(url, timeout=30).json() == [{"id": "app-1"}]
        assert s.cookies.get(name, path=f"/proxy/{app.app_id}") == "true"


def test_finished_applications_are_redirected_to_their_final_tracking_url():
    """A FINISHED (FAILED, KILLED) application: ProxyUtils.sendRedirect (302, Location, the Moved page)
    to the tracking URL + the rest of the path + the query: a Spark application's history server page,
    or the RM's application page once it failed."""
    history = "http://127.0.0.1:18080/history/app-1/1"
    with YarnCluster() as y:
        done = y.add_app("done", state="FINISHED", final_tracking_url=history)
        failed = y.add_app("failed", state="FAILED")
        r = get(f"{y.url}/proxy/{done.app_id}/api/v1/applications?status=running")
        assert r.status_code == 302
        assert r.headers["Location"] == f"{history}/api/v1/applications?status=running"
        assert r.headers["Content-Type"] == HTML and r.text == moved_page(r.headers["Location"])
        r = get(f"{y.url}/proxy/{done.app_id}/")
        assert r.headers["Location"] == history
        r = get(f"{y.url}/proxy/{failed.app_id}/jobs/")
        assert (r.status_code, r.headers["Location"]) == (302, f"{y.url}/cluster/app/{failed.app_id}/jobs/")


def test_no_tracking_url_redirects_to_the_rm_application_page():
    """getTrackingUri: an original tracking URL of N/A (the AM registered none, or a FINISHED one
    gave no final URL) is a 302 to ``<rm>/cluster/app/<id>``, before any warning."""
    with YarnCluster(security=True) as y:
        running = y.add_app("no-ui", user="alice")
        done = y.add_app("done", state="FINISHED", user="alice")
        for app in (running, done):
            r = get(f"{y.url}/proxy/{app.app_id}/api/v1/applications")
            assert (r.status_code, r.headers["Location"]) == (302, f"{y.url}/cluster/app/{app.app_id}")
            page = get(r.headers["Location"])
            assert page.status_code == 200 and app.app_id in page.text
        assert y.rms[0].warned == 0


def test_unknown_and_malformed_applications():
    """An application the RM does not know: 404 and ProxyUtils.notFound's page; an id Apps.toAppID
    cannot parse: YarnRuntimeException, the container's 500."""
    with YarnCluster() as y:
        r = get(f"{y.url}/proxy/application_{CLUSTER_TIMESTAMP}_0042/")
        assert r.status_code == 404 and r.headers["Content-Type"] == HTML
        assert r.text == not_found_page(f"Application application_{CLUSTER_TIMESTAMP}_0042 could not be found "
                                        "in RM or history server")
        r = get(f"{y.url}/proxy/not-an-app/")
        assert r.status_code == 500 and "Error parsing application ID: not-an-app" in r.text


def test_an_unreachable_am_is_a_500():
    """proxyLink's IOException (connection refused) reaches the container: 500. The stand-in never
    contacts an address off the loopback: such a tracking URL fails the same way."""
    with YarnCluster() as y:
        app = y.add_app("gone", driver=f"http://127.0.0.1:{free_port()}", am_filter=False)
        r = get(f"{y.url}/proxy/{app.app_id}/api/v1/applications")
        assert r.status_code == 500 and "java.net.ConnectException" in r.text
        app = y.add_app("elsewhere", tracking_url="nm1.example:33000")
        r = get(f"{y.url}/proxy/{app.app_id}/api/v1/applications")
        assert r.status_code == 500 and "nm1.example: not a loopback address" in r.text


# --- the AM side: AmIpFilter ---------------------------------------------------------------------------------------

def test_a_direct_request_to_the_am_goes_through_the_proxy():
    """AmIpFilter: a request from an address that is not a proxy host's gets 302 to
    ``<rm>/proxy/redirect/<app>/<path>?<query>``; the proxy serves that path as /proxy/<app>/...
    (handleRedirect: the request does not come from the proxy itself)."""
    with YarnCluster() as y:
        app = y.add_app("etl", routes=SPARK_ROUTES)
        r = get(app.am.url + "/api/v1/applications?status=running")
        location = f"{y.url}/proxy/redirect/{app.app_id}/api/v1/applications?status=running"
        assert (r.status_code, r.headers["Location"]) == (302, location)
        assert r.text == moved_page(location) and not app.am.requests
        r = get(location)
        assert r.status_code == 200 and r.json() == [{"id": "app-1"}]
        assert app.am.requests[-1].remote_addr == PROXY_ADDRESS
        r = requests.get(app.am.url + "/api/v1/applications", timeout=30)  # a client that follows
        assert r.json() == [{"id": "app-1"}] and [h.status_code for h in r.history] == [302]


def test_an_am_that_sends_the_proxy_back_to_itself_ends_on_the_failure_page():
    """handleRedirect: an AM that does not take the proxy for a proxy (a wrong PROXY_HOSTS) redirects
    the proxy's own request to /proxy/redirect/...; the proxy, seeing itself as the caller, answers
    302 to ``<rm>/cluster/failure/<app>`` (which its client follows) instead of looping."""
    with YarnCluster() as y:
        app = y.add_app("misconfigured")
        am = y.start_am(app.app_id, routes=SPARK_ROUTES, proxy_hosts=["127.0.0.3"])
        app.tracking_url = am.url
        r = get(f"{y.url}/proxy/{app.app_id}/api/v1/applications")
        assert r.status_code == 200  # the proxy followed the redirects itself
        assert app.app_id in r.text and "Failed" in r.text
        assert am.redirected == 1 and not am.requests
        assert (f"/cluster/failure/{app.app_id}", STATIC_USER) in y.rms[0].requests


def test_the_am_wraps_a_real_driver_url():
    """An AM in front of a driver URL relays its answers and points the driver's redirects at itself."""
    with _EchoServer() as echo, YarnCluster() as y:
        app = y.add_app("etl", driver=echo.url)
        r = get(f"{y.url}/proxy/{app.app_id}/redirect-me")
        assert r.status_code == 200 and r.text == "echo /target"
        assert [q.path for q in app.am.requests] == ["/redirect-me", "/target"]


# --- HA: RMWebAppFilter, IsActiveServlet ---------------------------------------------------------------------------

def test_the_standby_redirects_to_the_active_rm():
    """RMWebAppFilter: 307, Location = the active RM + the request URI + the query re-encoded
    (URLEncodedUtils: the comma as %2C), body "This is standby RM. The redirect url is: ...";
    /ws/v1/cluster/info, /isActive and /proxy/ are answered by the standby itself."""
    with YarnCluster(ha=True) as y:
        app = y.add_app("etl", routes=SPARK_ROUTES)
        rm1, rm2 = y.rms
        assert y.url == rm1.url
        r = get(f"{rm2.url}/ws/v1/cluster/apps?states=RUNNING,ACCEPTED&applicationTypes=spark")
        assert r.status_code == 307
        assert r.headers["Location"] == f"{rm1.url}/ws/v1/cluster/apps?states=RUNNING%2CACCEPTED&applicationTypes=spark"
        assert r.text == ("This is standby RM. The redirect url is: "
                          "/ws/v1/cluster/apps?states=RUNNING%2CACCEPTED&amp;applicationTypes=spark\n")
        assert apps_of(requests.get(r.url, timeout=30))[0]["id"] == app.app_id  # a client that follows
        assert get(f"{rm2.url}/ws/v1/cluster/info").json()["clusterInfo"]["haState"] == "STANDBY"
        assert get(f"{rm1.url}/ws/v1/cluster/info").json()["clusterInfo"]["haState"] == "ACTIVE"
        assert (get(f"{rm1.url}/isActive").status_code, get(f"{rm1.url}/isActive").text) == (200, "I am Active!")
        r = get(f"{rm2.url}/isActive")
        assert r.status_code == 405 and "I am not Active!" in r.text
        r = get(f"{rm2.url}/proxy/{app.app_id}/api/v1/applications")  # not redirected: the standby proxies
        assert r.status_code == 200 and r.json() == [{"id": "app-1"}]
        y.failover("rm2")
        r = get(f"{rm1.url}/ws/v1/cluster/apps")
        assert (r.status_code, r.headers["Location"]) == (307, f"{rm2.url}/ws/v1/cluster/apps")
        assert apps_of(get(f"{rm2.url}/ws/v1/cluster/apps"))[0]["trackingUrl"] == f"{rm2.url}/proxy/{app.app_id}/"


def test_no_active_rm():
    """RMWebAppFilter with no active RM: "Can not find any active RM. Will retry in next N seconds."
    and the ZooKeeper connection state, 307 with ``Refresh: N;url=<this RM>...next.refresh.interval=1``
    (N = 5 * 2**retries * [0.5, 1.5)); past 300 s, or with a bad interval, "There is no active RM
    right now." with 200 and no Refresh. A stopped active RM is no active RM."""
    with YarnCluster(ha=True) as y:
        rm1, rm2 = y.rms
        y.failover(None)
        for rm in (rm1, rm2):
            r = get(f"{rm.url}/ws/v1/cluster/apps?states=RUNNING")
            assert r.status_code == 307 and "Location" not in r.headers
            n, url = re.fullmatch(r"(\d+);url=(.*)", r.headers["Refresh"]).groups()
            assert 2 <= int(n) <= 7
            assert url == f"{rm.url}/ws/v1/cluster/apps?states=RUNNING&next.refresh.interval=1"
            assert r.text == (f"Can not find any active RM. Will retry in next {n} seconds.\n"
                              "HA Zookeeper Connection State: CONNECTED\n")
        r = get(f"{rm1.url}/ws/v1/cluster/apps?next.refresh.interval=3")
        n, url = re.fullmatch(r"(\d+);url=(.*)", r.headers["Refresh"]).groups()
        assert 20 <= int(n) <= 60 and url == f"{rm1.url}/ws/v1/cluster/apps?next.refresh.interval=4"
        for interval in ("7", "x"):
            r = get(f"{rm1.url}/ws/v1/cluster/apps?next.refresh.interval={interval}")
            assert r.status_code == 200 and "Refresh" not in r.headers
            assert r.text == "There is no active RM right now.\nHA Zookeeper Connection State: CONNECTED\n"
        y.failover("rm2")
        y.stop_rm("rm2")
        with pytest.raises(requests.ConnectionError):
            get(f"{rm2.url}/ws/v1/cluster/apps")
        assert get(f"{rm1.url}/ws/v1/cluster/apps").status_code == 307
        assert "Can not find any active RM" in get(f"{rm1.url}/ws/v1/cluster/apps").text
        y.start_rm("rm2")
        r = get(f"{rm1.url}/ws/v1/cluster/apps")
        assert (r.status_code, r.headers["Location"]) == (307, f"{rm2.url}/ws/v1/cluster/apps")


def test_the_am_filter_with_ha_picks_the_first_rm_whose_proxy_answers():
    """AmIpFilter.findRedirectUrl with RM_HA_URLS: the first RM whose proxy base answers 200
    (isValidUrl: the standby's proxy answers too); a stopped RM is skipped; none answering is a
    ServletException (500)."""
    with YarnCluster(ha=True) as y:
        app = y.add_app("etl", routes=SPARK_ROUTES)
        rm1, rm2 = y.rms
        r = get(app.am.url + "/jobs/")
        assert r.headers["Location"] == f"{rm1.url}/proxy/redirect/{app.app_id}/jobs/"
        y.stop_rm("rm1")
        y.failover("rm2")
        r = get(app.am.url + "/jobs/")
        assert r.headers["Location"] == f"{rm2.url}/proxy/redirect/{app.app_id}/jobs/"
        y.stop_rm("rm2")
        r = get(app.am.url + "/jobs/")
        assert r.status_code == 500 and "Could not determine the proxy server for redirection" in r.text


# --- authentication: StaticUserWebFilter, AuthenticationFilter + PseudoAuthenticationHandler ----------------------

def test_pseudo_authentication():
    """``?user.name=`` authenticates and sets ``hadoop.auth="u=..&p=..&t=simple&e=..&s=.."; HttpOnly``;
    that cookie alone authenticates later; a tampered one does not; anonymous requests pass when
    allowed (no user), else 401 ``WWW-Authenticate: PseudoAuth`` and the cookie emptied."""
    with YarnCluster(http_auth="simple") as y:
        rm = y.rms[0]
        r = get(f"{y.url}/ws/v1/cluster/apps?user.name=monitor")
        assert r.status_code == 200
        m = re.fullmatch(r'hadoop\.auth="(u=monitor&p=monitor&t=simple&e=(\d+)&s=[A-Za-z0-9+/=]+)"; HttpOnly',
                         r.headers["Set-Cookie"])
        assert m and int(m.group(2)) > CLUSTER_TIMESTAMP
        token = m.group(1)
        assert rm.requests[-1] == ("/ws/v1/cluster/apps?user.name=monitor", "monitor")
        r = get(f"{y.url}/ws/v1/cluster/apps", headers={"Cookie": f'hadoop.auth="{token}"'})
        assert r.status_code == 200 and "Set-Cookie" not in r.headers and rm.requests[-1][1] == "monitor"
        forged = token.replace("u=monitor&p=monitor", "u=yarn&p=yarn")
        get(f"{y.url}/ws/v1/cluster/apps", headers={"Cookie": f'hadoop.auth="{forged}"'})
        assert rm.requests[-1][1] is None  # anonymous
    with YarnCluster(http_auth="simple", anonymous_allowed=False) as y:
        r = get(f"{y.url}/ws/v1/cluster/apps")
        assert r.status_code == 401 and r.headers["WWW-Authenticate"] == "PseudoAuth"
        assert r.headers["Set-Cookie"] == "hadoop.auth=; HttpOnly" and "Authentication required" in r.text
        assert get(f"{y.url}/ws/v1/cluster/apps?user.name=monitor").status_code == 200


# --- Kerberos: SPNEGO in front -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def realm(tmp_path_factory):
    if kerberos.missing():
        pytest.skip(f"needs MIT Kerberos and Apache with mod_auth_gssapi; missing: {kerberos.missing()}")
    with kerberos.realm_of_this_process(tmp_path_factory.mktemp("realm")) as r:
        yield r


def test_kerberos_spnego_in_front_of_an_ha_pair(realm):
    """Unauthenticated: 401 ``WWW-Authenticate: Negotiate`` (RM and proxy alike); authenticated, the
    caller is its principal's short name: the warning page for another user's application, the AM's
    answer (as ``proxy-user=monitor``) for its own; the standby sends to the active RM's front; an
    AM sends direct requests to a front's /proxy/redirect/ (a 401 counts as alive with security)."""
    from sparkwatch.kerberos import spnego_auth
    auth = spnego_auth(principal=realm.client_principal, keytab=str(realm.client_keytab))
    with YarnCluster(ha=True, kerberos=realm) as y:
        assert y.security
        rm1, rm2 = y.rms
        assert rm1.url.startswith("http://localhost:") and rm1.url != rm1.backend_url
        theirs = y.add_app("etl", routes=SPARK_ROUTES, user="spark")
        mine = y.add_app("mine", routes=SPARK_ROUTES, user="monitor")
        for path in ("/ws/v1/cluster/apps", f"/proxy/{mine.app_id}/"):
            r = get(rm1.url + path)
            assert r.status_code == 401 and r.headers["WWW-Authenticate"] == "Negotiate"
        r = get(rm1.url + "/ws/v1/cluster/apps", auth=auth)
        assert r.status_code == 200 and {a["trackingUrl"] for a in apps_of(r)} == {
            f"{rm1.url}/proxy/{theirs.app_id}/", f"{rm1.url}/proxy/{mine.app_id}/"}
        assert rm1.requests[-1] == ("/ws/v1/cluster/apps", "monitor")
        r = get(f"{rm1.url}/proxy/{theirs.app_id}/api/v1/applications", auth=auth)
        assert r.text.startswith("<html>\n  <h1>\n    WARNING") and "owned by\n    spark\n" in r.text
        assert f"checked_{theirs.app_id}=false" in r.headers["Set-Cookie"]
        r = get(f"{rm1.url}/proxy/{mine.app_id}/api/v1/applications", auth=auth)
        assert r.json() == [{"id": "app-1"}] and mine.am.requests[-1].proxy_user == "monitor"
        r = get(f"{rm2.url}/ws/v1/cluster/apps", auth=auth)
        assert (r.status_code, r.headers["Location"]) == (307, f"{rm1.url}/ws/v1/cluster/apps")
        r = get(mine.am.url + "/jobs/")
        assert r.headers["Location"] == f"{rm1.url}/proxy/redirect/{mine.app_id}/jobs/"
        get(f"{rm1.url}/ws/v1/cluster/apps", auth=auth, headers={"X-Remote-User": "spark@" + realm.realm})
        assert rm1.requests[-1][1] == "monitor"  # a client's header is replaced by the front's


# --- test helpers --------------------------------------------------------------------------------------------------

class _EchoServer(LoopbackServer):
    """A driver stand-in: /redirect-me redirects (absolute, to itself) to /target; anything else
    answers ``echo <path>``; ``last_headers`` are the last request's."""

    def __init__(self):
        self.last_headers = {}
        super().__init__(self._answer)

    def _answer(self, req):
        self.last_headers = dict(req.headers)
        if req.uri == "/redirect-me":
            return Reply(302, b"moved", "text/plain", [("Location", f"{self.url}/target")])
        return Reply(200, f"echo {req.uri}".encode(), "text/plain")
