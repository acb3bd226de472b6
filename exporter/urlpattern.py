"""URL patterns for allow-lists (``/probe`` targets, redirects, discovered Spark UIs).

A pattern is a URL: ``scheme://host[:port][/path]``, matched on the parsed
URL, never on the raw string:

- scheme: equal (``http`` or ``https``);
- host: equal, case-insensitive; ``*`` matches within one DNS label only
  (``spark-*.internal`` matches ``spark-1.internal``, not
  ``spark-x.attacker.example``);
- port: equal to the URL's port (the scheme's default when either leaves it
  out), or ``*`` for any port;
- path: a prefix of the URL's path on a segment boundary (``/proxy`` matches
  ``/proxy`` and ``/proxy/app_1``, not ``/proxyfoo``); none means any path.

A URL with credentials, a query or a fragment never matches.

A pattern without a scheme, ``host:port``, matches a ZooKeeper server
(``host:port`` or ``host``, port 2181 by default) the same way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Optional
from urllib.parse import urlsplit

DEFAULT_PORTS = {"http": 80, "https": 443, "": 2181}
_LABEL_CHARS = "[A-Za-z0-9_-]"
_HOST_PATTERN = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.*-]+)$")


@dataclass(frozen=True)
class UrlPattern:
    text: str
    scheme: str
    host: "re.Pattern[str]"
    port: Optional[int]  # None = any port
    path: str  # "" = any path

    def matches(self, url: str) -> bool:
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            return False
        if not self.scheme or parts.scheme.lower() != self.scheme or not parts.hostname:
            return False
        if parts.username is not None or parts.password is not None or parts.query or parts.fragment:
            return False
        if "@" in parts.netloc:
            return False
        if not self.host.fullmatch(parts.hostname.lower()):
            return False
        if self.port is not None and (port if port is not None else DEFAULT_PORTS[self.scheme]) != self.port:
            return False
        if self.path:
            path = parts.path or "/"
            if not (path == self.path or path.startswith(self.path.rstrip("/") + "/")):
                return False
        return True


    def matches_host(self, hostport: str) -> bool:
        """For a scheme-less pattern: ``host[:port]`` or ``[v6]:port``."""
        if self.scheme:
            return False
        m = re.fullmatch(r"(\[[0-9A-Fa-f:.]+\]|[^:/@\s\[\]]+)(?::([0-9]{1,5}))?", hostport.strip())
        if not m:
            return False
        host, port = m.group(1).strip("[]").lower(), int(m.group(2) or DEFAULT_PORTS[""])
        return bool(self.host.fullmatch(host)) and (self.port is None or port == self.port)


def parse_pattern(text: str) -> UrlPattern:
    """Parse one pattern; ValueError says what is wrong with it."""
    hp = re.fullmatch(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.*-]+):(\*|[0-9]{1,5})", text.strip())
    if hp:
        host, port = hp.group(1).lower(), hp.group(2)
        return UrlPattern(text=text, scheme="", host=_host_regex(host), port=None if port == "*" else int(port),
                          path="")
    m = re.fullmatch(r"(?i)(https?)://([^/?#@]+?)(?::(\*|[0-9]{1,5}))?(/[^?#*]*)?", text.strip())
    if not m:
        raise ValueError(f"{text!r} is not a URL pattern scheme://host[:port][/path] "
                         "(no credentials, query or fragment; '*' only within the host or as the whole port)")
    scheme, host, port, path = m.group(1).lower(), m.group(2).lower(), m.group(3), m.group(4) or ""
    if not _HOST_PATTERN.match(host) or host.startswith(".") or ".." in host:
        raise ValueError(f"{text!r}: {host!r} is not a host name or address")
    if port is not None and port != "*" and not 0 < int(port) < 65536:
        raise ValueError(f"{text!r}: port {port} is out of range")
    return UrlPattern(
        text=text,
        scheme=scheme,
        host=_host_regex(host),
        port=None if port == "*" else int(port) if port is not None else DEFAULT_PORTS[scheme],
        path="" if path in ("", "/") else path,
    )


def _host_regex(host: str) -> "re.Pattern[str]":
    return re.compile("".join(f"{_LABEL_CHARS}*" if c == "*" else re.escape(c) for c in host.strip("[]")))


def any_matches(patterns: Iterable[UrlPattern], url: str) -> bool:
    return any(p.matches(url) for p in patterns)
