"""HTTP for the collectors: requests, bounded by the scrape deadline.

``requests`` timeouts bound each socket operation, not the whole response, so
a server that trickles bytes could hold a scrape forever. Bodies are therefore
read in chunks against the deadline, and capped in size. Every failure becomes
a :class:`~exporter.collector.TargetError` with a bounded reason; messages
never contain credentials (URLs never carry them: the config rejects that).
"""

from __future__ import annotations

import json
from typing import Any, Dict, Optional

import requests
import urllib3

from . import __version__
from .collector import Deadline, TargetError

MAX_BODY_BYTES = 64 * 1024 * 1024
CHUNK = 64 * 1024


class HttpClient:
    def __init__(self, target, max_body_bytes: int = MAX_BODY_BYTES):
        self.target = target
        self.base_url = target.url
        self.max_body_bytes = max_body_bytes
        s = requests.Session()
        s.headers["User-Agent"] = f"sparkwatch/{__version__}"
        s.headers["Accept"] = "application/json"
        s.trust_env = False  # no proxy or netrc surprises: the config says everything
        if target.basic_auth is not None:
            s.auth = (target.basic_auth.username, target.basic_auth.resolve_password())
        token = target.bearer_token()
        if token:
            s.headers["Authorization"] = f"Bearer {token}"
        tls = target.tls_config
        if tls.insecure_skip_verify:
            s.verify = False  # asked for explicitly; no warning on every request
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        elif tls.ca_file is not None:
            s.verify = str(tls.ca_file)
        if tls.cert_file is not None:
            s.cert = (str(tls.cert_file), str(tls.key_file)) if tls.key_file else str(tls.cert_file)
        self.session = s

    def close(self) -> None:
        self.session.close()

    def url(self, path: str) -> str:
        if path.startswith("http://") or path.startswith("https://"):
            return path
        return self.base_url + (path if path.startswith("/") else "/" + path)

    def get(self, path: str, deadline: Deadline, params: Optional[Dict[str, Any]] = None,
            ok_statuses=(200,)) -> requests.Response:
        """GET with the body read in full (``resp.content``) within the deadline.

        Statuses outside ``ok_statuses`` raise TargetError; pass e.g. (200, 404)
        to handle a 404 yourself.
        """
        url = self.url(path)
        where = path.split("?", 1)[0]
        timeout = deadline.timeout(self.target.timeout)
        try:
            resp = self.session.get(url, params=params, timeout=timeout, stream=True, allow_redirects=True)
        except requests.exceptions.SSLError as e:
            raise TargetError("tls", f"GET {where}: TLS error: {_short(e)}") from None
        except requests.exceptions.Timeout:
            raise TargetError("timeout", f"GET {where}: no answer within {timeout:.1f}s") from None
        except requests.exceptions.ConnectionError as e:
            raise TargetError("connection", f"GET {where}: cannot connect: {_short(e)}") from None
        except requests.exceptions.RequestException as e:
            raise TargetError("connection", f"GET {where}: {_short(e)}") from None
        try:
            body = bytearray()
            while True:
                # each read may block at most for what is left of the deadline
                _set_read_timeout(resp, deadline.timeout(self.target.timeout))
                try:
                    chunk = resp.raw.read1(CHUNK, decode_content=True)
                except Exception as e:  # urllib3 ReadTimeoutError, ProtocolError, ...
                    if "timed out" in str(e).lower():
                        raise TargetError("timeout", f"GET {where}: response not complete within the deadline") from None
                    raise TargetError("invalid_response", f"GET {where}: response cut off: {_short(e)}") from None
                if not chunk:
                    break
                body += chunk
                if len(body) > self.max_body_bytes:
                    raise TargetError("invalid_response", f"GET {where}: response larger than {self.max_body_bytes} bytes")
            resp._content = bytes(body)
            resp._content_consumed = True
        finally:
            resp.close()
        if resp.status_code not in ok_statuses:
            if resp.status_code in (401, 403):
                raise TargetError("auth", f"GET {where}: HTTP {resp.status_code} (check basic_auth / bearer token)")
            raise TargetError("http_status", f"GET {where}: HTTP {resp.status_code}")
        return resp

    def get_json(self, path: str, deadline: Deadline, params: Optional[Dict[str, Any]] = None,
                 expect: type = object) -> Any:
        """GET and decode JSON; anything else (HTML from a proxy, plain text from a
        starting driver, a cut-off body) is an ``invalid_response``."""
        resp = self.get(path, deadline, params)
        return decode_json(resp.content, path, resp.headers.get("Content-Type", ""), expect)


def decode_json(body: bytes, path: str, content_type: str = "", expect: type = object) -> Any:
    where = path.split("?", 1)[0]
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        snippet = body[:60].decode("utf-8", "replace").strip().replace("\n", " ")
        kind = "HTML" if snippet.lower().startswith(("<!doctype", "<html")) or "html" in content_type else "not JSON"
        raise TargetError("invalid_response", f"GET {where}: expected JSON, got {kind}: {snippet!r}") from None
    if expect is not object and not isinstance(data, expect):
        raise TargetError("invalid_response", f"GET {where}: expected a JSON {expect.__name__}, got {type(data).__name__}")
    return data


def _set_read_timeout(resp: requests.Response, seconds: float) -> None:
    conn = getattr(resp.raw, "connection", None)
    sock = getattr(conn, "sock", None)
    if sock is not None:
        sock.settimeout(seconds)


def _short(e: Exception) -> str:
    s = str(e)
    # requests wraps urllib3 errors in long reprs; keep the informative tail
    for marker in ("Caused by ", "Failed to establish a new connection: "):
        if marker in s:
            s = s.split(marker, 1)[1]
    return s.rstrip("'\")").strip()[:200]
