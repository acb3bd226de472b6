"""The running Spark applications of a cluster manager, and where their UIs are.

A ``spark`` target with ``discover: standalone`` or ``discover: yarn`` names a
cluster manager instead of one UI; the Spark collector asks it for the
running applications and scrapes each one's driver UI with
:mod:`exporter.sparkui`.

Standalone master (Spark 3.5 and 4.x, ``org.apache.spark.deploy.master``):
``GET /json/`` (``JsonProtocol.writeMasterState``) lists ``activeapps`` with
``id``, ``name`` and ``state``, but not the driver UI: that is the
application's ``appUiUrl``, which the master shows only in HTML. Its home page
(``MasterPage.appRow``) links each running application's name to it, right
after the link to ``app?appId=<id>``; with ``spark.ui.reverseProxy`` the link
is the master's own ``/proxy/<id>`` path. An application the home page does
not link (a page cut short) is looked up on its own page, ``app/?appId=<id>``,
whose "Application Detail UI" link is the same URL. An application started
with ``spark.ui.enabled=false`` has no UI to scrape.

YARN ResourceManager (the Hadoop RM REST API):
``GET /ws/v1/cluster/apps?states=RUNNING&applicationTypes=SPARK`` answers
``{"apps": {"app": [{"id", "name", "state", "trackingUrl", ...}]}}``, or
``{"apps": null}`` when there is none. ``trackingUrl`` is the RM web proxy's
path to the driver UI (``http://rm:8088/proxy/<id>/``). The proxy shows an
HTML warning page instead of the UI to a user it has not warned yet; the
cookie ``checked_<id>=true`` (what it sets once a user has clicked through)
tells it this client was warned, so it is sent with every request through the
proxy. Redirects from the proxy to the driver are followed (without the
target's credentials when the driver is another origin).
"""

from __future__ import annotations

from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Dict, List, Optional, Tuple
from urllib.parse import parse_qs, urljoin, urlsplit

from .collector import Deadline, TargetError

#: standalone application states in which a driver (and its UI) is alive
STANDALONE_ALIVE = ("RUNNING", "WAITING")


@dataclass(frozen=True)
class ClusterApp:
    app_id: str
    name: str
    #: the driver UI's root (no trailing slash), None when the application shows none
    ui: Optional[str]
    #: headers every request to this UI carries (the YARN proxy's cookie)
    headers: Tuple[Tuple[str, str], ...] = ()


def _invalid(where: str, what: str) -> TargetError:
    return TargetError("invalid_response", f"{where}: {what}")


# --------------------------------------------------------------------------
# Standalone


class _Links(HTMLParser):
    """Per table row, the hrefs of its links in order; and every link's text."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.rows: List[List[str]] = []
        self.links: List[Tuple[str, str]] = []  # (href, text)
        self._href: Optional[str] = None
        self._text: List[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "tr":
            self.rows.append([])
        elif tag == "a":
            href = dict(attrs).get("href")
            if href is not None:
                if self.rows:
                    self.rows[-1].append(href)
                self._href, self._text = href, []

    def handle_data(self, data):
        if self._href is not None:
            self._text.append(data)

    def handle_endtag(self, tag):
        if tag == "a" and self._href is not None:
            self.links.append((self._href, " ".join("".join(self._text).split())))
            self._href = None


def _app_id_of(href: str) -> Optional[str]:
    """``app?appId=X`` or ``app/?appId=X`` (relative or not) -> X."""
    parts = urlsplit(href)
    if not parts.path.rstrip("/").endswith("app"):
        return None
    ids = parse_qs(parts.query).get("appId")
    return ids[0] if ids else None


def ui_links_of_master_page(html: str, page_url: str) -> Dict[str, str]:
    """Application id -> driver UI URL, from a standalone master's home page."""
    p = _Links()
    p.feed(html)
    out: Dict[str, str] = {}
    for hrefs in p.rows:
        for i, href in enumerate(hrefs):
            app_id = _app_id_of(href)
            if app_id is not None:
                # the next real link of the row (the "(kill)" link, href="#", may come between)
                ui = next((h for h in hrefs[i + 1:] if h and not h.startswith(("#", "javascript:"))), None)
                if ui is not None and _app_id_of(ui) is None:
                    out.setdefault(app_id, urljoin(page_url, ui).rstrip("/"))
                break
    return out


def ui_link_of_app_page(html: str, page_url: str) -> Optional[str]:
    """The "Application Detail UI" link of a standalone master's application page."""
    p = _Links()
    p.feed(html)
    for href, text in p.links:
        if text == "Application Detail UI":
            return urljoin(page_url, href).rstrip("/")
    return None


def standalone_apps(http, master_url: str, deadline: Deadline) -> List[ClusterApp]:
    """The applications a standalone master runs, with their driver UIs.

    Raises TargetError when the master cannot be read."""
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
    resp = http.get(base + "/", deadline)
    links = ui_links_of_master_page(resp.content.decode("utf-8", "replace"), base + "/")
    out = []
    for app_id, name in apps:
        ui = links.get(app_id)
        if ui is None:
            page = base + "/app/?appId=" + app_id
            try:
                r = http.get(page, deadline)
                ui = ui_link_of_app_page(r.content.decode("utf-8", "replace"), page)
            except TargetError as e:
                if e.reason in ("timeout", "connection", "tls", "auth"):
                    raise
                ui = None
        out.append(ClusterApp(app_id, name, ui))
    return out


# --------------------------------------------------------------------------
# YARN


def yarn_apps(http, rm_url: str, deadline: Deadline) -> List[ClusterApp]:
    """The running Spark applications a YARN ResourceManager lists, with the RM
    web proxy's URL of each one's driver UI. Raises TargetError when the RM
    cannot be read."""
    base = rm_url.rstrip("/")
    where = "GET /ws/v1/cluster/apps"
    data = http.get_json(base + "/ws/v1/cluster/apps", deadline,
                         params={"states": "RUNNING", "applicationTypes": "SPARK"}, expect=dict)
    if "apps" not in data:
        raise _invalid(where, "no 'apps' (is this a YARN ResourceManager?)")
    apps = data["apps"]
    if apps is None:
        return []
    if not isinstance(apps, dict):
        raise _invalid(where, "'apps' is not an object")
    items = apps.get("app") or []
    if not isinstance(items, list):
        raise _invalid(where, "'apps.app' is not a list")
    out = []
    for a in items:
        if not isinstance(a, dict) or not isinstance(a.get("id"), str):
            raise _invalid(where, "an application without a string id")
        if a.get("state") not in (None, "RUNNING"):
            continue
        name = a.get("name") if isinstance(a.get("name"), str) else ""
        tracking = a.get("trackingUrl")
        ui = None
        if isinstance(tracking, str) and tracking.strip().startswith(("http://", "https://", "/")):
            ui = urljoin(base + "/", tracking.strip()).rstrip("/")
            if urlsplit(ui).scheme not in ("http", "https"):
                ui = None
        out.append(ClusterApp(a["id"], name, ui, (("Cookie", f"checked_{a['id']}=true"),)))
    return out
