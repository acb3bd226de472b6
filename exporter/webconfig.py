"""The web configuration file (``--web.config.file``): TLS and basic authentication
for the exporter's own endpoints, in the format of Prometheus' exporter-toolkit
(https://github.com/prometheus/exporter-toolkit/blob/master/docs/web-configuration.md)::

    tls_server_config:
      cert_file: server.pem
      key_file: server.key
      client_auth_type: RequireAndVerifyClientCert
      client_ca_file: clients-ca.pem
    basic_auth_users:
      prometheus: $2y$10$...   # bcrypt hash (htpasswd -nBC 10 "" | tr -d ':\\n')

Everything is checked when the file is loaded: an unknown key, a file that does
not exist, a certificate and key that do not load, or a value that is not a
bcrypt hash is an error naming its key. What the exporter-toolkit offers and
sparkwatch does not (``RequestClientCert``, ``RequireAnyClientCert``, cipher
suites, curves, ``rate_limit``) is an error too, never silently ignored.

Authentication applies to every path except ``/-/healthy``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import re
import secrets
import ssl
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Annotated, Any, Callable, Dict, List, Literal, Optional

from pydantic import AfterValidator, ValidationError, field_validator, model_validator

from .config import ConfigError, format_validation_error, read_yaml_file
from .targetconfig import Strict

#: paths answered without authentication (a liveness check needs no secret)
UNPROTECTED_PATHS = frozenset({"/-/healthy"})

CLIENT_AUTH_TYPES = ("NoClientCert", "RequestClientCert", "RequireAnyClientCert",
                     "VerifyClientCertIfGiven", "RequireAndVerifyClientCert")
_UNSUPPORTED_CLIENT_AUTH = ("RequestClientCert", "RequireAnyClientCert")
_VERIFYING = {"VerifyClientCertIfGiven": ssl.CERT_OPTIONAL, "RequireAndVerifyClientCert": ssl.CERT_REQUIRED}

TLSVersionName = Literal["TLS10", "TLS11", "TLS12", "TLS13"]
_TLS_VERSIONS = {"TLS10": ssl.TLSVersion.TLSv1, "TLS11": ssl.TLSVersion.TLSv1_1,
                 "TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}

#: the response headers exporter-toolkit lets a web configuration set
ALLOWED_HEADERS = ("Content-Security-Policy", "Strict-Transport-Security", "X-Content-Type-Options",
                   "X-Frame-Options", "X-XSS-Protection")

_BCRYPT = re.compile(r"^\$2[aby]\$(\d\d)\$[./A-Za-z0-9]{53}$")


def _not_supported(instead: str = ""):
    def check(v):
        if v is not None:
            raise ValueError(f"an exporter-toolkit setting sparkwatch does not support{instead}")
        return v

    return AfterValidator(check)


#: a key sparkwatch knows from exporter-toolkit but does not implement: an error when set
Unsupported = Annotated[Any, _not_supported()]


def _existing_file(p: Optional[Path]) -> Optional[Path]:
    if p is not None and not p.is_file():
        raise ValueError(f"{p}: no such file")
    return p


ExistingFile = Annotated[Optional[Path], AfterValidator(_existing_file)]


def _bcrypt_hash(h: str) -> str:
    m = _BCRYPT.match(h)
    if not m or not 4 <= int(m.group(1)) <= 31:
        raise ValueError("not a bcrypt hash ($2y$, $2b$ or $2a$, a cost of 04 to 31, 53 characters of "
                         "salt and hash); make one with: htpasswd -nBC 10 \"\" | tr -d ':\\n'")
    return h


BcryptHash = Annotated[str, AfterValidator(_bcrypt_hash)]


class TLSServerConfig(Strict):
    """``tls_server_config``: the server's certificate and key, and whether and how
    client certificates are verified."""

    cert_file: ExistingFile = None
    key_file: ExistingFile = None
    client_auth_type: Literal[CLIENT_AUTH_TYPES] = "NoClientCert"  # type: ignore[valid-type]
    client_ca_file: ExistingFile = None
    #: the verified client certificate must carry one of these subject alternative names
    client_allowed_sans: List[str] = []
    min_version: TLSVersionName = "TLS12"
    max_version: Optional[TLSVersionName] = None
    # exporter-toolkit settings that have no equivalent here: an error, never ignored
    cipher_suites: Annotated[Any, _not_supported(" (OpenSSL's defaults for the TLS version apply)")] = None
    curve_preferences: Unsupported = None
    prefer_server_cipher_suites: Unsupported = None
    cert: Annotated[Any, _not_supported("; give cert_file")] = None
    key: Annotated[Any, _not_supported("; give key_file")] = None
    client_ca: Annotated[Any, _not_supported("; give client_ca_file")] = None

    @field_validator("client_auth_type")
    @classmethod
    def _supported_client_auth(cls, v: str) -> str:
        if v in _UNSUPPORTED_CLIENT_AUTH:
            raise ValueError(f"{v} is not supported: Python's ssl module cannot ask for a client certificate "
                             "without verifying it; use VerifyClientCertIfGiven or RequireAndVerifyClientCert "
                             "with client_ca_file")
        return v

    @model_validator(mode="after")
    def _consistent(self):
        if self.cert_file is None:
            raise ValueError("cert_file is missing (and key_file with it): TLS needs a certificate")
        if self.key_file is None:
            raise ValueError("key_file is missing: TLS needs the certificate's private key")
        verifying = self.client_auth_type in _VERIFYING
        if verifying and self.client_ca_file is None:
            raise ValueError(f"client_ca_file is missing: client_auth_type {self.client_auth_type} "
                             "verifies client certificates against it")
        if not verifying and self.client_ca_file is not None:
            raise ValueError("client_ca_file is set but client_auth_type is NoClientCert: set client_auth_type "
                             "to VerifyClientCertIfGiven or RequireAndVerifyClientCert")
        if self.client_allowed_sans and self.client_auth_type != "RequireAndVerifyClientCert":
            raise ValueError("client_allowed_sans needs client_auth_type RequireAndVerifyClientCert")
        if self.max_version is not None and _TLS_VERSIONS[self.max_version] < _TLS_VERSIONS[self.min_version]:
            raise ValueError(f"max_version {self.max_version} is below min_version {self.min_version}")
        return self

    def ssl_context(self) -> ssl.SSLContext:
        """The server context; ConfigError (naming the key) when a file does not load."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            ctx.minimum_version = _TLS_VERSIONS[self.min_version]
            if self.max_version is not None:
                ctx.maximum_version = _TLS_VERSIONS[self.max_version]
        except (ValueError, ssl.SSLError) as e:
            raise ConfigError(f"tls_server_config.min_version/max_version: {e}") from None
        _check_pem("cert_file", self.cert_file, "CERTIFICATE")
        _check_pem("key_file", self.key_file, "PRIVATE KEY")
        try:
            ctx.load_cert_chain(self.cert_file, self.key_file)
        except (OSError, ssl.SSLError) as e:
            reason = _ssl_reason(e)
            if "MISMATCH" in reason.upper():
                raise ConfigError(f"tls_server_config.key_file: {self.key_file} is not the key of cert_file "
                                  f"{self.cert_file}") from None
            raise ConfigError(f"tls_server_config.cert_file: cannot load {self.cert_file} with key_file "
                              f"{self.key_file}: {reason}") from None
        if self.client_auth_type in _VERIFYING:
            _check_pem("client_ca_file", self.client_ca_file, "CERTIFICATE")
            try:
                ctx.load_verify_locations(cafile=str(self.client_ca_file))
            except (OSError, ssl.SSLError) as e:
                raise ConfigError(f"tls_server_config.client_ca_file: cannot load {self.client_ca_file}: "
                                  f"{_ssl_reason(e)}") from None
            ctx.verify_mode = _VERIFYING[self.client_auth_type]
        return ctx

    def peer_check(self) -> Optional[Callable[[Optional[dict]], bool]]:
        """With ``client_allowed_sans``: whether a verified client certificate (as
        :meth:`ssl.SSLSocket.getpeercert` gives it) carries one of them; else None."""
        if not self.client_allowed_sans:
            return None
        allowed = {_normalize_san(s) for s in self.client_allowed_sans}

        def check(cert: Optional[dict]) -> bool:
            sans = (cert or {}).get("subjectAltName", ())
            return any(_normalize_san(value) in allowed for _, value in sans)

        return check


def _normalize_san(s: str) -> str:
    try:
        return str(ipaddress.ip_address(s))
    except ValueError:
        return s


def _check_pem(key: str, path: Path, kind: str) -> None:
    """ConfigError naming ``key`` unless ``path`` holds a PEM block of ``kind`` (never quoting the file)."""
    try:
        text = path.read_text(errors="replace")
    except OSError as e:
        raise ConfigError(f"tls_server_config.{key}: cannot read {path}: {e.strerror}") from None
    if not re.search(rf"-----BEGIN [A-Z ]*{kind}-----", text):
        raise ConfigError(f"tls_server_config.{key}: {path} holds no PEM {kind.lower()}")


def _ssl_reason(e: Exception) -> str:
    return getattr(e, "reason", None) or getattr(e, "strerror", None) or str(e)


class HTTPServerConfig(Strict):
    """``http_server_config``: the response headers added to every answer."""

    #: sparkwatch speaks HTTP/1.x only; the setting is accepted for compatibility
    http2: bool = True
    headers: Dict[str, str] = {}

    @field_validator("headers")
    @classmethod
    def _allowed_headers(cls, v: Dict[str, str]) -> Dict[str, str]:
        canonical = {h.lower(): h for h in ALLOWED_HEADERS}
        out = {}
        for name, value in v.items():
            if name.lower() not in canonical:
                raise ValueError(f"header {name!r} cannot be set; allowed: {', '.join(ALLOWED_HEADERS)}")
            name = canonical[name.lower()]
            if name == "X-Content-Type-Options" and value.lower() != "nosniff":
                raise ValueError("X-Content-Type-Options can only be nosniff")
            if name == "X-Frame-Options" and value.lower() not in ("deny", "sameorigin"):
                raise ValueError("X-Frame-Options can only be deny or sameorigin")
            if "\r" in value or "\n" in value:
                raise ValueError(f"header {name} holds a line break")
            out[name] = value
        return out


class WebConfig(Strict):
    """The whole web configuration file; what serving needs of it
    (:func:`sparkwatch.web.serve`): :meth:`ssl_context`, :meth:`peer_check`, :meth:`wrap`."""

    tls_server_config: Optional[TLSServerConfig] = None
    http_server_config: HTTPServerConfig = HTTPServerConfig()
    #: user name -> bcrypt hash of the password
    basic_auth_users: Dict[str, BcryptHash] = {}
    rate_limit: Unsupported = None

    @field_validator("tls_server_config", mode="before")
    @classmethod
    def _empty_tls_is_no_tls(cls, v):
        # as in exporter-toolkit: a tls_server_config without any setting serves plain HTTP
        return None if v == {} else v

    @field_validator("basic_auth_users")
    @classmethod
    def _user_names(cls, v: Dict[str, str]) -> Dict[str, str]:
        for name in v:
            if ":" in name:
                raise ValueError(f"user name {name!r} contains ':', which basic authentication cannot carry")
        return v

    # ------------------------------------------------------------- what serving needs

    def ssl_context(self) -> Optional[ssl.SSLContext]:
        """The server's TLS context, or None for plain HTTP."""
        return self.tls_server_config.ssl_context() if self.tls_server_config is not None else None

    def peer_check(self):
        """The check of client certificates' names (:meth:`TLSServerConfig.peer_check`), or None."""
        return self.tls_server_config.peer_check() if self.tls_server_config is not None else None

    def wrap(self, app):
        """``app`` behind basic authentication and with the configured headers (if any)."""
        if not self.basic_auth_users and not self.http_server_config.headers:
            return app
        return Protected(app, BasicAuth(self.basic_auth_users) if self.basic_auth_users else None,
                         list(self.http_server_config.headers.items()))

    def describe(self) -> str:
        """One line for the log: TLS or not, and how many basic-auth users (never a secret)."""
        parts = []
        tls = self.tls_server_config
        if tls is None:
            parts.append("plain HTTP")
        else:
            parts.append(f"TLS (client certificates: {tls.client_auth_type})")
        n = len(self.basic_auth_users)
        parts.append(f"basic auth: {n} user{'s' if n != 1 else ''}" if n else "no basic auth")
        return ", ".join(parts)


def parse_web_config(data: Any, source: str = "web config") -> WebConfig:
    """The web configuration from parsed YAML; ConfigError naming the key (and
    ``source``) when anything is wrong, certificates and keys that do not load included."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping, got {type(data).__name__}")
    try:
        cfg = WebConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, source)) from None
    try:
        cfg.ssl_context()  # certificates and keys that do not load are configuration errors too
    except ConfigError as e:
        raise ConfigError(f"{source}: invalid configuration\n  {e}") from None
    return cfg


def load_web_config(path) -> WebConfig:
    """The web configuration file at ``path`` (``--web.config.file``): :func:`parse_web_config` of its YAML."""
    return parse_web_config(read_yaml_file(path), str(path))


# ---------------------------------------------------------------------- basic auth

#: salt and hash of a bcrypt hash of "fakepassword": checked, at the configured users' cost, for
#: unknown user names, so that the time an answer takes does not tell which user names exist
_FAKE_SALT_AND_HASH = "QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DUmpZ/VcEd00UAV/LDeSi"


#: bytes of a password bcrypt reads; a longer password never passes
BCRYPT_MAX_PASSWORD = 72


def _cost(hashed: bytes) -> int:
    return int(hashed.split(b"$")[2])


class BasicAuth:
    """Checks ``Authorization: Basic`` against bcrypt hashes.

    bcrypt is slow on purpose (tens of milliseconds at cost 10), so a header that
    passed is remembered: the cache holds an HMAC of the exact header under a key
    drawn at random when the process starts (never the password, nor a digest
    that could be attacked offline without that key), at most ``CACHE_SIZE``
    headers, the least recently used forgotten first. A header the cache does not
    know costs one bcrypt check, one at a time. User names are compared in
    constant time; an unknown user name is checked against a fake hash of the
    highest cost among the configured hashes, so it takes as long as a wrong
    password (exporter-toolkit's fake hash has a fixed cost of 10).

    The server (:mod:`sparkwatch.httpserver`) asks :meth:`known` before a request takes a
    connection slot and runs :meth:`check` for the rest on a thread of its own,
    so that a flood of failed logins never holds the slots that valid requests
    need."""

    CACHE_SIZE = 100

    def __init__(self, users: Dict[str, str]):
        self._users = [(u.encode(), h.encode()) for u, h in users.items()]
        cost = max((_cost(h) for _, h in self._users), default=10)
        self._fake = f"$2b${cost:02d}${_FAKE_SALT_AND_HASH}".encode()
        self._key = secrets.token_bytes(32)
        self._ok: "OrderedDict[bytes, None]" = OrderedDict()
        self._cache_lock = threading.Lock()
        self._bcrypt_lock = threading.Lock()

    @staticmethod
    def credentials(header: Optional[str]):
        """(user, password) as bytes from an ``Authorization: Basic`` value, or None."""
        if not header:
            return None
        scheme, _, encoded = header.strip().partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            raw = base64.b64decode(encoded.strip(), validate=True)
        except (binascii.Error, ValueError):
            return None
        user, sep, password = raw.partition(b":")
        return (user, password) if sep else None

    def _digest(self, header: str) -> bytes:
        return hmac.new(self._key, header.encode("utf-8", "surrogatepass"), hashlib.sha256).digest()

    def known(self, header: Optional[str]) -> bool:
        """Whether ``header`` passed a check before (no bcrypt)."""
        if not header:
            return False
        digest = self._digest(header)
        with self._cache_lock:
            if digest in self._ok:
                self._ok.move_to_end(digest)
                return True
        return False

    def check(self, header: Optional[str]) -> bool:
        """Whether ``header`` holds a configured user and password (one bcrypt check unless :meth:`known`)."""
        if self.known(header):
            return True
        creds = self.credentials(header)
        if creds is None:
            return False
        user, password = creds
        hashed, known = self._fake, False
        for name, h in self._users:  # every entry compared, in constant time each
            if hmac.compare_digest(name, user):
                hashed, known = h, True
        import bcrypt

        with self._bcrypt_lock:
            try:
                # bcrypt reads 72 bytes: bcrypt 4 cuts a longer password silently (a wrong one
                # sharing the first 72 bytes would pass), bcrypt 5 raises; the same check runs
                # on what it reads, and a longer password is refused after it
                ok = bcrypt.checkpw(password[:BCRYPT_MAX_PASSWORD], hashed)
            except ValueError:
                ok = False
        ok = ok and known and len(password) <= BCRYPT_MAX_PASSWORD
        if ok:
            with self._cache_lock:
                self._ok[self._digest(header)] = None
                while len(self._ok) > self.CACHE_SIZE:
                    self._ok.popitem(last=False)
        return ok


UNAUTHORIZED_BODY = "Unauthorized\n"


class Protected:
    """A WSGI app behind basic authentication (except :data:`UNPROTECTED_PATHS`),
    adding configured response headers to every answer."""

    def __init__(self, app, auth: Optional[BasicAuth], headers: List[tuple]):
        self.app, self.auth, self.headers = app, auth, headers

    def admit(self, path: str, header: Optional[str]) -> Optional[bool]:
        """Before a request takes a connection slot: True when it needs no bcrypt check
        (a path without authentication, or a header that passed before), False when
        it is refused without one (no basic credentials at all), None when it needs
        one (:meth:`verify`)."""
        if self.auth is None or path in UNPROTECTED_PATHS or self.auth.known(header):
            return True
        return None if BasicAuth.credentials(header) is not None else False

    def verify(self, header: Optional[str]) -> bool:
        """The check :meth:`admit` left open: whether ``header`` holds valid credentials (bcrypt)."""
        return self.auth is None or self.auth.check(header)

    def __call__(self, environ, start_response):
        def answer(status, response_headers, exc_info=None):  # start_response, with the configured headers
            return start_response(status, list(response_headers) + self.headers, exc_info)

        if (self.auth is None or environ.get("PATH_INFO") in UNPROTECTED_PATHS
                or self.auth.check(environ.get("HTTP_AUTHORIZATION"))):
            return self.app(environ, answer)
        body = UNAUTHORIZED_BODY.encode()
        answer("401 Unauthorized", [("Content-Type", "text/plain; charset=utf-8"),
                                    ("Content-Length", str(len(body))), ("WWW-Authenticate", "Basic")])
        return [body]
