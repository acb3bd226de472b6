"""Hadoop's HTTP authentication, as a client sees it: pseudo authentication, and what a
server that refuses a request (``401``, ``403``) asks for.

Pseudo authentication (``hadoop.http.authentication.type: simple``): hadoop-auth's
``AuthenticationFilter`` with ``PseudoAuthenticationHandler`` takes the user from the
query parameter ``user.name``, or from the ``hadoop.auth`` cookie it signed on an earlier
answer (``u=<user>&p=<user>&t=simple&e=<expiry>&s=<signature>``, valid
``hadoop.http.authentication.token.validity``, 10 hours by default). Without either it
serves the request anonymously, or, when ``...simple.anonymous.allowed`` is false,
answers ``401`` with ``WWW-Authenticate: PseudoAuth``. The filter guards every path of
the ResourceManager, its web proxy included.

:class:`PseudoAuth` is a ``requests`` auth for the session of the target's own origins
only (the HTTP client's rule for credentials): on a ``401 PseudoAuth`` it sends the
request again with ``user.name`` added, and keeps the ``hadoop.auth`` cookie the answer
sets, to send it with the next requests to those origins (one request each, not two).
The cookie is taken only from answers to paths outside ``/proxy/``: through its web
proxy, the ResourceManager copies an application's own headers into its answer, and
nothing an application sets may reach the ResourceManager.
"""

from __future__ import annotations

import re
from typing import Dict, List, Optional
from urllib.parse import urlsplit

import requests

AUTH_COOKIE = "hadoop.auth"
#: a cookie value as RFC 6265 allows it (cookie-octets, optionally in double quotes), at most 4 KiB:
#: anything else is not kept
_COOKIE_VALUE = re.compile(r'"?[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]{1,4096}"?')


def add_cookie(request: requests.PreparedRequest, name: str, value: str) -> None:
    """Add ``name=value`` to the request's ``Cookie`` header."""
    have = request.headers.get("Cookie")
    request.headers["Cookie"] = f"{have}; {name}={value}" if have else f"{name}={value}"


def _drop_cookie(request: requests.PreparedRequest, name: str) -> None:
    have = request.headers.get("Cookie")
    if have is None:
        return
    kept = [c for c in (x.strip() for x in have.split(";")) if c and not c.startswith(name + "=")]
    if kept:
        request.headers["Cookie"] = "; ".join(kept)
    else:
        del request.headers["Cookie"]


def challenges(headers) -> List[str]:
    """The authentication schemes a response's ``WWW-Authenticate`` names, lower case
    (``Negotiate, Basic realm="x"``: requests joins repeated headers with ``, ``)."""
    out = []
    for part in (headers.get("WWW-Authenticate") or "").split(","):
        word = part.strip().split(" ", 1)[0]
        if word and "=" not in word:
            out.append(word.lower())
    return out


class PseudoAuth(requests.auth.AuthBase):
    """Hadoop's pseudo authentication as ``user`` (see the module's documentation). The
    ``hadoop.auth`` cookie is kept per origin (each ResourceManager of an HA pair signs its
    own, unless they share a signer secret), at most :data:`MAX_ORIGINS` of them."""

    MAX_ORIGINS = 16

    def __init__(self, user: str):
        self.user = user
        #: origin (scheme://host:port as the URL writes it) -> the hadoop.auth cookie's value
        #: as that server set it
        self.tokens: Dict[str, str] = {}

    @staticmethod
    def _origin(url: Optional[str]) -> str:
        parts = urlsplit(url or "")
        return f"{parts.scheme}://{parts.netloc}"

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        token = self.tokens.get(self._origin(r.url))
        if token is not None:
            add_cookie(r, AUTH_COOKIE, token)
        r.register_hook("response", self._answered)
        return r

    def _answered(self, resp: requests.Response, **kwargs) -> requests.Response:
        if resp.status_code == 401 and "pseudoauth" in challenges(resp.headers):
            resp.close()  # its body is not read: the connection is not reused
            req = resp.request.copy()
            req.prepare_url(req.url, {"user.name": self.user})
            _drop_cookie(req, AUTH_COOKIE)  # the one refused (expired, or signed by a restarted server)
            again = resp.connection.send(req, **kwargs)
            again.history.append(resp)
            again.request = req
            resp = again
        self._keep(resp)
        return resp

    def _keep(self, resp: requests.Response) -> None:
        """Keep the hadoop.auth cookie the server set on an answer of its own."""
        origin = self._origin(resp.request.url)
        if resp.status_code == 401:
            self.tokens.pop(origin, None)
            return
        path = urlsplit(resp.request.url or "").path
        if path == "/proxy" or path.startswith("/proxy/") or resp.status_code >= 400:
            return  # through the proxy, the application's own headers
        raw = getattr(resp.raw, "headers", None)
        for v in raw.getlist("Set-Cookie") if hasattr(raw, "getlist") else ():
            name, eq, value = v.split(";", 1)[0].strip().partition("=")
            if not eq or name.strip() != AUTH_COOKIE:
                continue
            value = value.strip()
            if _COOKIE_VALUE.fullmatch(value) and (origin in self.tokens or len(self.tokens) < self.MAX_ORIGINS):
                self.tokens[origin] = value
            else:  # emptied (hadoop.auth=; on a refusal), or not a value to send back
                self.tokens.pop(origin, None)


def auth_hint(status: int, headers, target, own_origin: bool, relayed: bool = False) -> str:
    """What to check when a request of ``target`` got ``status`` (401 or 403): what the
    server asks for (its ``WWW-Authenticate``) against what the target is configured with.
    ``relayed``: the path is one the target's server relays elsewhere (its ``relayed_paths``)."""
    if not own_origin:
        return "no credentials are sent there: it is not the target's own origin"
    if relayed:
        return ("no credentials are sent there: the server relays that path, headers and all, to an address "
                "an application chose (a standalone master's reverse proxy; see credentials_through_reverse_proxy)")
    configured = target.auth_names() if hasattr(target, "auth_names") else []
    if status == 403:
        who = " / ".join(configured) or "an anonymous client"
        return f"forbidden to {who}: check the server's access control lists for that identity"
    wants = set(challenges(headers))
    if "negotiate" in wants and "kerberos" not in configured:
        return "the server wants Kerberos (SPNEGO): configure kerberos: with a principal and its keytab, or a ticket cache"
    if "negotiate" in wants:
        return ("the server refused the Kerberos ticket: check that its service principal HTTP/<host> is the one "
                "the URL's host names (or kerberos.service_host), and its keytab")
    if "pseudoauth" in wants and "user_name" not in configured:
        return "the server wants Hadoop's pseudo authentication: configure user_name:"
    if "pseudoauth" in wants:
        return "the server refused user_name"
    if "basic" in wants and "basic_auth" not in configured:
        return "the server wants basic authentication: configure basic_auth:"
    if "bearer" in wants and not any(k.startswith("bearer_token") for k in configured):
        return "the server wants a bearer token: configure bearer_token_file: or bearer_token_env:"
    if configured:
        return f"the server refused {' / '.join(configured)}"
    return "the server wants credentials: configure basic_auth, a bearer token, kerberos or user_name"
