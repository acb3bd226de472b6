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

A URL with credentials, a query or a fragment never matches, nor one that
:func:`resolve` refuses.

:func:`resolve` is the one place that decides where a URL leads: the origin
(scheme, host, port) is read from the URL as requests prepares it and as its
adapter and urllib3 connect with, and every request, redirect hop and pattern
match goes by it. Parsers disagree on odd URLs (``http://a:1\\@b:2/`` is host
``b`` for ``urllib.parse``, host ``a`` for urllib3 and browsers): a URL whose
authority holds anything but letters, digits, ``.-_:[]`` (a backslash,
userinfo ``@``, a percent-escape, non-ASCII) or that holds whitespace or a
control character anywhere is refused rather than guessed.

A pattern without a scheme, ``host:port``, matches a ZooKeeper server
(``host:port`` or ``host``, port 2181 by default) the same way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable, Optional
from urllib.parse import unquote, urlparse, urlsplit

import requests
from urllib3.util import parse_url

DEFAULT_PORTS = {"http": 80, "https": 443, "": 2181}
_LABEL_CHARS = "[A-Za-z0-9_-]"
_HOST_PATTERN = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.*-]+)$")
#: anywhere in a URL: urllib.parse drops tabs and newlines before it splits, requests
#: strips leading whitespace, http.client refuses controls; each would see another URL
_UNSAFE_ANYWHERE = re.compile(r"[\x00-\x20\x7f]")
#: the authority (from '//' to the first '/', '?' or '#': the widest any parser reads)
_SCHEME_AUTHORITY = re.compile(r"(?i)(https?)://([^/?#]*)")
_SAFE_AUTHORITY = re.compile(r"[A-Za-z0-9._:\[\]-]+")


@dataclass(frozen=True)
class Origin:
    """Where a request goes: scheme, host (lower case; an IPv6 address without
    brackets) and port (the scheme's default when the URL leaves it out)."""

    scheme: str
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


@dataclass(frozen=True)
class ResolvedUrl:
    """A URL as requests sends it (``url``: prepared, query included) and the
    origin it connects to."""

    url: str
    origin: Origin


def resolve(url: str, params: Any = None) -> ResolvedUrl:
    """The one decision on where ``url`` (with ``params`` as its query) leads.

    The URL is prepared as requests prepares it (``PreparedRequest.prepare_url``:
    urllib3's ``parse_url``, then re-assembled and re-quoted); the origin is read
    from that prepared URL as requests' adapter reads it to pick its urllib3
    connection pool (``urlparse``: scheme, hostname, port), and urllib3's own
    parse of it must agree. Send ``ResolvedUrl.url``: it is what was decided on.
    ValueError (which never quotes the URL: it may carry a secret) when the URL is
    not a plain ``http(s)://host[:port]`` URL or the parsers disagree."""
    if not isinstance(url, str):
        raise ValueError("not a URL")
    if _UNSAFE_ANYWHERE.search(url):
        raise ValueError("URL with whitespace or a control character")
    m = _SCHEME_AUTHORITY.match(url)
    if not m:
        raise ValueError("not an http:// or https:// URL")
    if not _SAFE_AUTHORITY.fullmatch(m.group(2)):
        raise ValueError("URL whose host part holds something other than a host and port "
                         "(user info, a backslash, an escape, non-ASCII)")
    try:
        prep = requests.PreparedRequest()
        prep.prepare_url(url, params)  # what Session.prepare_request does with a URL
        prepared = prep.url
        parts = urlparse(prepared)  # what requests' adapter picks the connection pool by
        port = parts.port
        u3 = parse_url(prepared)  # what urllib3 itself reads
    except (requests.exceptions.RequestException, ValueError, UnicodeError):
        raise ValueError("URL that does not parse as http(s)://host[:port]") from None
    scheme, host = parts.scheme.lower(), parts.hostname or ""
    pm = _SCHEME_AUTHORITY.match(prepared)
    if (scheme not in ("http", "https") or not host or not pm or not _SAFE_AUTHORITY.fullmatch(pm.group(2))
            or parts.username is not None or u3.auth is not None
            or (u3.host or "").strip("[]").lower() != host or u3.port != port or port == 0):
        raise ValueError("URL whose host and port the HTTP library would read differently")
    return ResolvedUrl(prepared, Origin(scheme, host, port if port is not None else DEFAULT_PORTS[scheme]))


def resolve_or_none(url: str) -> Optional[ResolvedUrl]:
    """:func:`resolve` on ``url``, or None for a URL it refuses."""
    try:
        return resolve(url)
    except ValueError:
        return None


@dataclass(frozen=True)
class UrlPattern:
    """One allow-list entry (``/probe``'s ``allowed_targets``, ``discovered_ui_allowed``,
    ``redirects_allowed_to``), parsed once: scheme, host (``*`` matches within one DNS label),
    port and path prefix, matched against a URL as the HTTP library will connect to it."""

    text: str
    scheme: str
    host: "re.Pattern[str]"
    port: Optional[int]  # None = any port
    path: str  # "" = any path

    def matches(self, url: str) -> bool:
        """On the origin :func:`resolve` decides and the path requests sends."""
        if not self.scheme:
            return False
        try:
            r = resolve(url)
        except ValueError:
            return False
        parts = urlsplit(r.url)
        if r.origin.scheme != self.scheme or parts.query or parts.fragment:
            return False
        if not self.host.fullmatch(r.origin.host):
            return False
        if self.port is not None and r.origin.port != self.port:
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


#: percent-escapes decoded at most this many times over (a path still changing is taken as routed)
_DECODE_ROUNDS = 4


def _route_segments(path: str) -> Optional[list]:
    """``path`` as a server may route it, read the widest way servlet containers do: percent-escapes
    decoded (again, while that changes it), backslashes as slashes, each segment's path parameters
    (``;x``) dropped, empty and ``.`` segments gone, ``..`` resolved, case ignored. None when it
    does not settle."""
    for _ in range(_DECODE_ROUNDS):
        decoded = unquote(path)
        if decoded == path:
            break
        path = decoded
    else:
        return None
    out: list = []
    for seg in path.replace("\\", "/").split("/"):
        seg = seg.split(";", 1)[0].lower()
        if seg in ("", "."):
            continue
        if seg == "..":
            if out:
                out.pop()
            continue
        out.append(seg)
    return out


def routed_under(url: str, prefix: str) -> bool:
    """Whether a server may route ``url`` (as :func:`resolve` prepares it) to the path ``prefix``
    or below it, on segment boundaries, however the path spells it: ``/json/..;x/proxy/a`` and
    ``/proxy;x/a`` are ``/proxy/a`` to Jetty. It errs towards yes: it decides which paths do not
    get what must not reach what is below ``prefix`` (the target's credentials, when its server
    relays that path elsewhere)."""
    path = _route_segments(urlsplit(url).path)
    under = _route_segments(prefix)
    if path is None or under is None:
        return True
    return path[:len(under)] == under


def any_matches(patterns: Iterable[UrlPattern], url: str) -> bool:
    return any(p.matches(url) for p in patterns)
