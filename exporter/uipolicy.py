"""Where the Spark UIs a target discovers may be read: :class:`UiPolicy`.

Three discoverers learn driver UI URLs from a target: a ``spark`` target with
``discover: standalone`` (the master's links) or ``discover: yarn`` (each
application's ``trackingUrl``), and a ``livy`` target with
``discover_spark_ui`` (a session's ``appInfo.sparkUiUrl``). Whoever submits an
application writes those URLs, so one policy decides for all three which may be
requested and where their redirects may lead; each discoverer builds it with its
own default (the Spark collector's in :func:`sparkwatch.collectors.spark.clusters.ui_policy`,
the Livy collector's in its own module) and the target's ``discovered_ui_allowed``
(:data:`UiPatterns`). Here rather than in either collector's package: no collector
imports another's discovery.
"""

from __future__ import annotations

import re
from typing import Annotated, FrozenSet, Iterable, List, Optional
from urllib.parse import urlsplit, urlunsplit

from pydantic import AfterValidator

from .urlpattern import Origin, parse_pattern, resolve_or_none


#: a proxy path to one application's UI: YARN's web proxy, a standalone master's reverse proxy
PROXY_PATH = re.compile(r"/proxy/([A-Za-z0-9][A-Za-z0-9_.-]*)/?")


def _check_patterns(v: List[str]) -> List[str]:
    for p in v:
        parse_pattern(p)  # ValueError names the pattern
    return v


#: a configuration key holding URL patterns (``discovered_ui_allowed``), checked when loaded
UiPatterns = Annotated[List[str], AfterValidator(_check_patterns)]


class UiPolicy:
    """Where the discovered Spark UIs of one target may be read.

    A discovered UI's URL is data from the target (a Livy session's
    ``appInfo.sparkUiUrl``, a standalone master's link, a YARN ``trackingUrl``):
    whoever submits an application chooses it. A UI is read only when its URL is
    one the HTTP client accepts (:func:`sparkwatch.urlpattern.resolve`: no user
    info, backslash or control character) with no query or fragment, and

    - matches one of ``allowed`` (URL patterns, :mod:`sparkwatch.urlpattern`), or
    - is on the target's own host (any port and either scheme with ``host_wide``;
      else the target's own origin) and is a proxy path ``/proxy/<id>`` (``<id>``
      the application's own id when it is known) or, with ``roots``, a UI root
      (a driver on that host).

    Redirects from a UI's requests are followed only to URLs the same rules allow
    (any path below an allowed pattern; on the target's host any path with
    ``roots``, else below ``/proxy/``). Credentials are not this policy's
    business: the HTTP client sends them to the target's own origin only, and
    not to the paths its server relays elsewhere (a standalone master's reverse
    proxy: ``HttpTarget.relayed_paths``)."""

    def __init__(self, home_url, allowed: Iterable[str] = (), *, host_wide: bool, roots: bool):
        self.patterns = [parse_pattern(p) for p in allowed]
        self.host_wide, self.roots = host_wide, roots
        # the target's own URL, or its URLs (a ResourceManager HA list: each RM is home)
        homes = [home_url] if isinstance(home_url, str) else list(home_url or ())
        self._homes: FrozenSet[Origin] = frozenset(r.origin for r in map(resolve_or_none, filter(None, homes)) if r)

    def _on_home(self, origin: Origin) -> bool:
        if self.host_wide:
            return any(origin.host == h.host for h in self._homes)
        return origin in self._homes

    def allows(self, url: str, app_id: Optional[str] = None) -> bool:
        """Whether the UI at ``url`` (its root) of application ``app_id`` may be read."""
        r = resolve_or_none(url)
        if r is None:
            return False
        parts = urlsplit(r.url)
        if parts.query or parts.fragment or "?" in url or "#" in url:
            return False
        if any(p.matches(url) for p in self.patterns):
            return True
        if not self._on_home(r.origin):
            return False
        proxy = PROXY_PATH.fullmatch(parts.path or "/")
        if proxy:
            return app_id is None or proxy.group(1) == app_id
        return self.roots and (parts.path or "/") == "/"

    def allows_redirect(self, url: str) -> bool:
        """Whether a redirect from a discovered UI's request may be followed to ``url``."""
        r = resolve_or_none(url)
        if r is None:
            return False
        parts = urlsplit(r.url)
        if any(p.matches(urlunsplit(parts._replace(query="", fragment=""))) for p in self.patterns):
            return True
        if not self._on_home(r.origin):
            return False
        return self.roots or (parts.path or "/").startswith("/proxy/")
