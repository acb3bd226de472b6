"""The running Spark applications of a cluster manager, and where their UIs are.

A ``spark`` target with ``discover: standalone`` or ``discover: yarn`` names a
cluster manager instead of one UI; the Spark collector asks it for the
running applications and scrapes each one's driver UI with
:mod:`.scrape`.

Standalone master (Spark 3.5 and 4.x, ``org.apache.spark.deploy.master``):
``GET /json/`` (``JsonProtocol.writeMasterState``) lists ``activeapps`` with
``id``, ``name`` and ``state``, but not the driver UI: that is the
application's ``appUiUrl``, which the master shows only in HTML. Its home page
(``MasterPage.appRow``) links each running application's name to it, right
after the link to ``app?appId=<id>``; with ``spark.ui.reverseProxy`` the link
is the master's own ``/proxy/<id>`` path; an application started with
``spark.ui.enabled=false`` has no UI, and its link is empty. An application
the home page does not list (a page cut short, or one registered between the
two requests) is looked up on its own page, ``app/?appId=<id>``, whose
"Application Detail UI" link is the same URL: at most as many as
``max_applications`` leaves room for, within half of what is left of the
deadline. The home page is read up to :data:`MAX_MASTER_PAGE_BYTES` and parsed
a chunk at a time, keeping one table row at a time, until every application is
found or the deadline passes.

YARN ResourceManager (the Hadoop RM REST API; :class:`YarnRms`):
``GET /ws/v1/cluster/apps?states=RUNNING&applicationTypes=SPARK`` answers
``{"apps": {"app": [{"id", "name", "state", "applicationType", "trackingUrl", ...}]}}``,
or ``{"apps": {}}`` (Hadoop 3) / ``{"apps": null}`` (Hadoop 2) when there is none.
State and type are checked on the answer too (an RM or a gateway may ignore the
filters; types compared lower-cased, as Hadoop does). ``trackingUrl`` is the RM web
proxy's path to the driver UI (``http://rm:8088/proxy/<id>/``), or, for an unmanaged
AM (client mode with ``spark.yarn.unmanagedAM.enabled``), the driver itself, whose
``AmIpFilter`` answers a direct request with a ``302`` to
``<rm>/proxy/redirect/<id>/...``. With Hadoop security on, the proxy shows an HTML
warning page instead of the UI to a user it has not warned yet; the cookie
``checked_<id>=true`` (what it sets once a user has clicked through) tells it this
client was warned: :class:`ProxyCookie` sends it to that application's proxy paths
on the proxies' origins, and nowhere else. A ResourceManager HA pair is a list of
URLs: the active one is found (a standby answers ``307`` to it, or, with none,
"Can not find any active RM"), remembered, and only configured RMs are asked.

Where a driver UI may be read is :class:`sparkwatch.uipolicy.UiPolicy`'s decision
(:func:`ui_policy` is a cluster target's; the Livy collector's discovered UIs
follow it too): the URLs come from whoever submits an application. Credentials go to the cluster manager's own origin only (the
HTTP client's rule), never to a driver elsewhere; nor to a standalone master's
reverse proxy (:func:`standalone_relayed_paths`), which relays them to the
driver. YARN's web proxy passes on a fixed list of headers
(``WebAppProxyServlet.PASS_THROUGH_HEADERS``), no credential among them: its
``/proxy/`` paths get them like the rest of the ResourceManager.
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Callable, Dict, FrozenSet, Iterable, List, Optional, Set, Tuple
from urllib.parse import parse_qs, urljoin, urlsplit

from ...collector import Deadline, TargetError
from ...httpclient import decode_json
from ...uipolicy import PROXY_PATH, UiPolicy
from ...urlpattern import Origin, resolve_or_none

#: standalone application states in which a driver (and its UI) is alive
STANDALONE_ALIVE = ("RUNNING", "WAITING")
#: an application id as Spark (``app-20261129230451-0000``) and YARN
#: (``application_1764400000000_0001``) make them; an id that is not one is never put
#: into a URL, a header or a path check
APP_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,199}")

#: a standalone master's home page is read up to this many bytes (a real one is about
#: 1 KB per running application: some 8,000 of them); the applications beyond are
#: looked up on their own pages like any the page does not link
MAX_MASTER_PAGE_BYTES = 8 * 1024 * 1024
#: an application's page is read up to this many bytes (its "Application Detail UI" link
#: comes before its executors)
MAX_APP_PAGE_BYTES = 1024 * 1024
#: HTML is parsed this many characters at a time, the deadline checked in between
PARSE_CHUNK = 64 * 1024
#: a page's parse stops after this many tags and pieces of text (a real master's home page
#: has about 60 per running application: the byte cap's worth), each costing a microsecond
#: or so of Python whatever its size (16 MiB of '<' are 16 million pieces of text)
MAX_HTML_EVENTS = 600_000
#: ... or when one construct (a tag, a comment, a script) stays open for this many
#: characters: the parser would scan it again at every chunk
MAX_PENDING = 64 * 1024
#: links kept per table row (a master's application row has three), characters of a link's
#: text kept, characters of an href beyond which it is no URL
MAX_ROW_LINKS = 16
MAX_LINK_TEXT = 64
MAX_HREF = 4096


@dataclass(frozen=True)
class ClusterApp:
    """A running application a cluster manager lists (a standalone master, a YARN
    ResourceManager): its id, its name, and the URL of its driver UI as the manager
    advertises it (untrusted: checked by the discovered-UI policy before any fetch)."""

    app_id: str
    name: str
    #: the driver UI's root (no trailing slash), None when the application shows none
    ui: Optional[str]
    #: the headers of each request to this UI, by the URL it is sent to (a YARN application's
    #: :class:`ProxyCookie`: the proxy's cookie, at its proxy paths only), or None
    headers: Optional[Callable[[str], Optional[Dict[str, str]]]] = None


def _invalid(where: str, what: str) -> TargetError:
    return TargetError("invalid_response", f"{where}: {what}")


# --------------------------------------------------------------------------
# Which discovered UIs may be read, and where credentials go


def standalone_relayed_paths(master_url: str) -> List[str]:
    """The paths of a standalone master that it relays to an address an application chose: its
    reverse proxy (``spark.ui.reverseProxy``), ``/proxy`` below the master's URL (a front that
    serves the master below a path serves the proxy below it too). ``JettyUtils.createProxyHandler``
    is a Jetty ``ProxyServlet``, which passes on every request header but ``Host`` and the
    hop-by-hop ones (``AbstractProxyServlet.copyRequestHeaders``): ``Authorization`` and ``Cookie``
    reach the address the application registered as its UI (``appUiUrl``), so whoever submits an
    application would receive the target's credentials. The HTTP client sends none there
    (``HttpTarget.relayed_paths``)."""
    return [urlsplit(master_url).path.rstrip("/") + "/proxy"]


def ui_policy(discover: str, url, allowed: Iterable[str]) -> UiPolicy:
    """The policy of a spark target with ``discover``: a YARN ResourceManager's UIs are its
    own web proxy's ``/proxy/<application>`` (on its origin; ``url`` may be the list of an HA
    pair's RMs: each one's), where its AMs' AmIpFilter also sends direct requests
    (``/proxy/redirect/<application>``, a redirect); a standalone master's are its reverse
    proxy's, or drivers on the master's host (a driver in client mode there)."""
    if discover == "yarn":
        return UiPolicy(url, allowed, host_wide=False, roots=False)
    return UiPolicy(url, allowed, host_wide=True, roots=True)


# --------------------------------------------------------------------------
# HTML, within bounds


class _Links(HTMLParser):
    """Streams over a page and keeps nothing of it: each table row's hrefs (at most
    :data:`MAX_ROW_LINKS`) go to ``on_row`` when the row ends, each link's
    ``(href, text)`` (the text cut at :data:`MAX_LINK_TEXT`) to ``on_link``. Either may
    set ``done`` to stop the parse; it stops by itself after :data:`MAX_HTML_EVENTS`."""

    def __init__(self, on_row: Optional[Callable[[List[str]], None]] = None,
                 on_link: Optional[Callable[[str, str], None]] = None):
        super().__init__(convert_charrefs=True)
        self.on_row, self.on_link = on_row, on_link
        self.done = False
        self._row: Optional[List[str]] = None
        self._href: Optional[str] = None
        self._text: List[str] = []
        self._text_len = 0
        self._events = 0

    def _event(self) -> None:
        self._events += 1
        if self._events > MAX_HTML_EVENTS:
            self.done = True

    def handle_comment(self, data):
        self._event()

    handle_decl = handle_pi = unknown_decl = handle_comment

    def end_row(self) -> None:
        if self._row is not None and self.on_row is not None:
            self.on_row(self._row)
        self._row = None

    def handle_starttag(self, tag, attrs):
        self._event()
        if tag == "tr":
            self.end_row()
            self._row = []
        elif tag == "a":
            href = next((v for k, v in attrs if k == "href"), None)
            if href is not None:
                if len(href) > MAX_HREF:
                    href = "about:too-long"  # no URL: refused like any other
                if self._row is not None and len(self._row) < MAX_ROW_LINKS:
                    self._row.append(href)
                self._href, self._text, self._text_len = href, [], 0

    def handle_data(self, data):
        self._event()
        if self._href is not None and self._text_len < MAX_LINK_TEXT:
            self._text.append(data[: MAX_LINK_TEXT - self._text_len])
            self._text_len += len(self._text[-1])

    def handle_endtag(self, tag):
        self._event()
        if tag == "a" and self._href is not None:
            if self.on_link is not None:
                self.on_link(self._href, " ".join("".join(self._text).split()))
            self._href = None
        elif tag in ("tr", "tbody", "table"):
            self.end_row()



def _parse(parser: _Links, html: str, deadline: Optional[Deadline], where: str) -> None:
    """Feed ``html`` to ``parser`` a chunk at a time, until it is done or the page is
    beyond what a real one holds (what was found so far stands, as for a page cut
    short); a deadline that passes stops it (``timeout``): a hostile page costs CPU
    only within the scrape, and little of it."""
    for i in range(0, len(html), PARSE_CHUNK):
        if deadline is not None and deadline.expired():
            raise TargetError("timeout", f"{where}: the page was not parsed within the deadline")
        parser.feed(html[i:i + PARSE_CHUNK])
        if parser.done or len(parser.rawdata) > MAX_PENDING:
            break
    # no close(): what is left is one construct that never ends (a real page ends with
    # </html>), and closing on it costs time quadratic in its length
    parser.end_row()


# --------------------------------------------------------------------------
# Standalone


def _app_id_of(href: str) -> Optional[str]:
    """``app?appId=X`` or ``app/?appId=X`` (relative or not) -> X."""
    parts = urlsplit(href)
    if not parts.path.rstrip("/").endswith("app"):
        return None
    ids = parse_qs(parts.query).get("appId")
    return ids[0] if ids else None


def ui_links_of_master_page(html: str, page_url: str, wanted: Optional[Set[str]] = None,
                            deadline: Optional[Deadline] = None) -> Dict[str, Optional[str]]:
    """Application id -> driver UI URL, from a standalone master's home page; None for an
    application the page lists with an empty link (``spark.ui.enabled=false``: no UI).
    Only the ids in ``wanted`` (when given) are kept, and the parse ends once all are
    found; a ``deadline`` that passes stops it (TargetError ``timeout``)."""
    out: Dict[str, Optional[str]] = {}
    parser = _Links()

    def on_row(hrefs: List[str]) -> None:
        for i, href in enumerate(hrefs):
            app_id = _app_id_of(href)
            if app_id is None:
                continue
            if (wanted is None or app_id in wanted) and app_id not in out:
                # the next link of the row (the "(kill)" link, href="#", may come between)
                ui = next((h for h in hrefs[i + 1:] if not h.startswith("#")), None)
                if ui == "":
                    out[app_id] = None
                elif ui is not None and _app_id_of(ui) is None:
                    out[app_id] = urljoin(page_url, ui).rstrip("/")
            break
        if wanted is not None and len(out) >= len(wanted):
            parser.done = True

    parser.on_row = on_row
    _parse(parser, html, deadline, "GET /")
    return out


def ui_link_of_app_page(html: str, page_url: str, deadline: Optional[Deadline] = None) -> Optional[str]:
    """The "Application Detail UI" link of a standalone master's application page."""
    found: List[str] = []
    parser = _Links()

    def on_link(href: str, text: str) -> None:
        if text == "Application Detail UI" and not found:
            found.append(urljoin(page_url, href).rstrip("/") if href else "")
            parser.done = True

    parser.on_link = on_link
    _parse(parser, html, deadline, "GET /app/")
    return (found[0] or None) if found else None


def standalone_apps(http, master_url: str, deadline: Deadline, max_lookups: int = 500,
                    concurrency: int = 1) -> List[ClusterApp]:
    """The applications a standalone master runs, with their driver UIs.

    Applications the home page does not list are looked up on their own pages: at
    most ``max_lookups`` of them (less the UIs the home page gave), ``concurrency`` at
    a time, within half of what is left of the deadline; the others are returned
    without a UI. Raises TargetError when the master cannot be read."""
    base = master_url.rstrip("/")
    state = http.get_json(base + "/json/", deadline, expect=dict)
    active = state.get("activeapps")
    if not isinstance(active, list):
        raise _invalid("GET /json/", "'activeapps' is missing or not a list (is this a standalone master?)")
    apps: List[Tuple[str, str]] = []
    for a in active:
        if not isinstance(a, dict) or not isinstance(a.get("id"), str):
            raise _invalid("GET /json/", "an active application without a string id")
        if a.get("state") in STANDALONE_ALIVE:
            name = a.get("name")
            apps.append((a["id"], name if isinstance(name, str) else ""))
    if not apps:
        return []
    wanted = {app_id for app_id, _ in apps if APP_ID.fullmatch(app_id)}
    resp = http.get(base + "/", deadline)
    page = str(memoryview(resp.content)[:MAX_MASTER_PAGE_BYTES], "utf-8", "replace")
    del resp
    links = ui_links_of_master_page(page, base + "/", wanted, deadline)
    del page

    missing = [app_id for app_id, _ in apps if app_id in wanted and app_id not in links]
    budget = max(0, max_lookups - sum(1 for u in links.values() if u))
    if missing and budget:
        links.update(_look_up(http, base, missing[:budget], deadline, concurrency))
    return [ClusterApp(app_id, name, links.get(app_id)) for app_id, name in apps]


def _look_up(http, base: str, app_ids: List[str], deadline: Deadline, concurrency: int) -> Dict[str, Optional[str]]:
    """Application id -> the UI its own page links (None: none, or the page could not be read)."""
    left = deadline.remaining()
    lookups = Deadline(max(0.0, left / 2))

    def one(app_id: str) -> Tuple[str, Optional[str]]:
        if lookups.expired():
            return app_id, None
        page = base + "/app/?appId=" + app_id  # a checked id (APP_ID): nothing to quote
        try:
            r = http.get(page, lookups)
            html = str(memoryview(r.content)[:MAX_APP_PAGE_BYTES], "utf-8", "replace")
            return app_id, ui_link_of_app_page(html, page, lookups)
        except TargetError:
            return app_id, None  # this application's UI is unknown this scrape (partial)

    with ThreadPoolExecutor(max_workers=max(1, min(concurrency, len(app_ids))),
                            thread_name_prefix="scrape-spark-lookup") as pool:
        return dict(pool.map(one, app_ids))


# --------------------------------------------------------------------------
# YARN

#: the REST list of applications, as every ResourceManager (and a gateway in front) serves it
YARN_APPS_PATH = "/ws/v1/cluster/apps"
#: what a standby ResourceManager without an active one says (RMWebAppFilter), kept in the error
_NO_ACTIVE_RM = ("Can not find any active RM", "There is no active RM right now")
#: bytes of such an answer quoted in the error
_QUOTED = 200
#: which reason a target whose every ResourceManager failed reports: the most telling one
_REASON_ORDER = ("auth", "tls", "limit", "invalid_response", "http_status", "timeout", "connection")


class ProxyCookie:
    """The web proxy's cookie for one application, ``checked_<app>=true`` (what
    ``WebAppProxyServlet`` sets once a user has been warned and went on): called with
    the URL of each request as it is sent, it gives the ``Cookie`` header for a request
    to that application's proxy paths on a proxy's origin, and None for any other.

    Its paths: ``/proxy/<app>`` (the cookie's own ``Path``) and ``/proxy/redirect/<app>``,
    where an AM's ``AmIpFilter`` sends a direct request (an unmanaged AM, whose
    trackingUrl is the driver itself); the proxy reads the cookie there too. Its
    origins: the ResourceManagers of the target (whose web proxy is embedded), and a
    separate web proxy (``yarn.web-proxy.address``) the trackingUrl names. A driver,
    and the RM's REST API, never get it."""

    __slots__ = ("origins", "prefixes", "header")

    def __init__(self, app_id: str, origins: FrozenSet[Origin]):
        self.origins = origins
        self.prefixes = (f"/proxy/{app_id}", f"/proxy/redirect/{app_id}")
        self.header = {"Cookie": f"checked_{app_id}=true"}

    def __call__(self, url: str) -> Optional[Dict[str, str]]:
        r = resolve_or_none(url)
        if r is None or r.origin not in self.origins:
            return None
        path = urlsplit(r.url).path
        if any(path == p or path.startswith(p + "/") for p in self.prefixes):
            return dict(self.header)
        return None


def _is_spark(app: dict) -> bool:
    """Whether a listed application is a Spark one: ``applicationType`` compared as Hadoop
    compares it (lower-cased); an RM or a gateway may ignore ``applicationTypes``. A record
    without the field (no Hadoop release omits it) is kept."""
    t = app.get("applicationType")
    return t is None or (isinstance(t, str) and t.lower() == "spark")


def _standby_text(head: bytes) -> Optional[str]:
    """What a standby ResourceManager without an active one says, from its answer's first bytes."""
    text = head.decode("utf-8", "replace")
    if any(m in text for m in _NO_ACTIVE_RM):
        return " ".join(text.split())
    return None


class YarnRms:
    """The ResourceManagers of one target: one, or an HA list (``urls``: each RM's
    ``yarn.resourcemanager.webapp.address``), and which one answered last.

    :meth:`apps` asks that one first, then the others in the configured order, each
    within a fair share of what is left of the deadline; a standby's ``307`` to the
    active RM is followed only to a configured RM (the HTTP client's redirect policy;
    the list's final origin is checked too), and the one that answered is remembered
    for the next scrape. Credentials go to the configured RMs only (the HTTP client's
    rule: they are the target's own origins)."""

    def __init__(self, urls: Iterable[str]):
        self.urls = [u.rstrip("/") for u in urls]
        if not self.urls:
            raise ValueError("no ResourceManager URL")
        resolved = [resolve_or_none(u) for u in self.urls]
        self._origin_of = [r.origin if r is not None else None for r in resolved]
        self.origins: FrozenSet[Origin] = frozenset(o for o in self._origin_of if o is not None)
        self._active = 0

    def apps(self, http, deadline: Deadline) -> List[ClusterApp]:
        """The running Spark applications of the active ResourceManager. Raises TargetError
        when none answers (its message says what each said)."""
        order = [self._active] + [i for i in range(len(self.urls)) if i != self._active]
        failed: List[Tuple[str, TargetError]] = []
        for k, i in enumerate(order):
            share = deadline if k == len(order) - 1 else Deadline(max(0.0, deadline.remaining()) / (len(order) - k))
            try:
                answered, apps = self._list(http, self.urls[i], share)
            except TargetError as e:
                failed.append((self.urls[i], e))
                if deadline.expired():
                    break
                continue
            self._active = answered
            return apps
        if len(self.urls) == 1:
            raise failed[0][1]
        reasons = [e.reason for _, e in failed]
        reason = next((r for r in _REASON_ORDER if r in reasons), reasons[0])
        asked = {u for u, _ in failed}
        said = "; ".join(e.message for _, e in failed)  # each names its RM's URL
        if len(asked) < len(self.urls):
            said += f"; not asked within the deadline: {', '.join(u for u in self.urls if u not in asked)}"
        raise TargetError(reason, f"no ResourceManager of {len(self.urls)} answered: {said}")

    def _list(self, http, base: str, deadline: Deadline) -> Tuple[int, List[ClusterApp]]:
        """(the index of the RM that answered, its applications), asking ``base``."""
        where = f"GET {base}{YARN_APPS_PATH}"
        try:
            resp = http.get(base + YARN_APPS_PATH, deadline, params={"states": "RUNNING", "applicationTypes": "SPARK"},
                            ok_statuses=(200, 307))
        except TargetError as e:
            if "redirect" in e.message and "not allowed" in e.message:
                raise TargetError(e.reason, f"{e.message} (a standby ResourceManager sends to the active one: "
                                            "list every ResourceManager of the cluster in urls)") from None
            raise
        final = resolve_or_none(resp.url or base)
        answered = next((i for i, o in enumerate(self._origin_of) if final is not None and o == final.origin), None)
        if answered is None:
            raise TargetError("invalid_response", f"{where}: redirected to {_origin_text(resp.url)}, not a "
                                                  "configured ResourceManager")
        head = bytes(memoryview(resp.content)[:_QUOTED])
        if resp.status_code == 307 or head.lstrip()[:1] not in (b"{", b"["):
            # not JSON: RMWebAppFilter's answer (a 307 with Refresh, or a 200 once it gave up)
            standby = _standby_text(head)
            if resp.status_code == 307 or standby:
                raise TargetError("http_status", f"{where}: a standby ResourceManager with no active one: "
                                                 f"{standby or 'HTTP 307 without a Location'}")
        data = decode_json(resp.content, base + YARN_APPS_PATH, resp.headers.get("Content-Type", ""), dict,
                           budget=http.budget)
        del resp
        return answered, _apps_of(data, self.urls[answered], where, self.origins, deadline)


def _origin_text(url: Optional[str]) -> str:
    r = resolve_or_none(url or "")
    return f"{r.origin.scheme}://{r.origin.host}:{r.origin.port}" if r is not None else "a refused URL"


def _apps_of(data: dict, base: str, where: str, rm_origins: FrozenSet[Origin],
             deadline: Deadline) -> List[ClusterApp]:
    """The running Spark applications of an answer of ``base``, each with its trackingUrl
    (the RM web proxy's ``<rm>/proxy/<id>/``; an unmanaged AM's own URL) as its UI. A list
    too long to go through within the deadline (some 30 us an application) is a timeout."""
    if "apps" not in data:
        raise _invalid(where, "no 'apps' (is this a YARN ResourceManager?)")
    apps = data["apps"]
    if apps is None:  # Hadoop 2: nothing matches
        return []
    if not isinstance(apps, dict):
        raise _invalid(where, "'apps' is not an object")
    items = apps.get("app") or []
    if not isinstance(items, list):
        raise _invalid(where, "'apps.app' is not a list")
    out = []
    for n, a in enumerate(items):
        if n % 256 == 0 and deadline.expired():
            raise TargetError("timeout", f"{where}: {len(items)} applications not gone through within the deadline")
        if not isinstance(a, dict) or not isinstance(a.get("id"), str):
            raise _invalid(where, "an application without a string id")
        if a.get("state") not in (None, "RUNNING") or not _is_spark(a):
            continue
        name = a.get("name") if isinstance(a.get("name"), str) else ""
        if not APP_ID.fullmatch(a["id"]):  # no such id goes into a cookie
            out.append(ClusterApp(a["id"], name, None))
            continue
        tracking = a.get("trackingUrl")
        ui = None
        origins = rm_origins
        if isinstance(tracking, str) and tracking.strip().startswith(("http://", "https://", "/")):
            ui = urljoin(base + "/", tracking.strip()).rstrip("/")
            r = resolve_or_none(ui)
            if r is not None and PROXY_PATH.fullmatch(urlsplit(r.url).path or "/"):
                origins = rm_origins | {r.origin}  # a web proxy of its own (yarn.web-proxy.address)
        out.append(ClusterApp(a["id"], name, ui, ProxyCookie(a["id"], origins)))
    return out
