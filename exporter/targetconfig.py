"""The configuration pieces every target kind builds on: strict models, basic
auth, TLS, an HTTP(S) target, bounded durations. Collector modules import these
to define their target models; :mod:`sparkwatch.config` assembles the whole file
from the kinds registered in :mod:`sparkwatch.collectors`.

Authentication to a target's own origin(s): ``basic_auth``, a bearer token, ``kerberos``
(SPNEGO, :mod:`sparkwatch.kerberos`) or ``user_name`` (Hadoop's pseudo authentication,
:mod:`sparkwatch.hadoopauth`), one of them.

Secrets (passwords, tokens) are held as :class:`pydantic.SecretStr`. Password
and token files are read and checked when the configuration is loaded (one
line, no control characters; a token has no whitespace at all), and the value
read then is the one used: a secret that could not be sent as it is fails the
configuration with a message that names the key, never the value.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, List, Annotated, Literal, Optional
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr, field_validator, model_validator

#: the longest timeout or deadline (seconds): every one reaches a socket timeout,
#: an Event.wait or a sleep, which reject or overflow on huge values
MAX_TIMEOUT_SECONDS = 3600.0
#: the longest interval or age (seconds) a setting may give (a cache lifetime, a retention)
MAX_INTERVAL_SECONDS = 366 * 24 * 3600.0

#: a timeout or deadline in seconds: finite, > 0, at most an hour
Seconds = Annotated[float, Field(gt=0, le=MAX_TIMEOUT_SECONDS, allow_inf_nan=False)]
#: like :data:`Seconds`, 0 allowed (an offset)
SecondsOrZero = Annotated[float, Field(ge=0, le=MAX_TIMEOUT_SECONDS, allow_inf_nan=False)]
#: an interval or age in seconds (a cache lifetime, a retention): finite, >= 0, at most a year;
#: add ``Field(gt=0)`` where 0 makes no sense
Interval = Annotated[float, Field(ge=0, le=MAX_INTERVAL_SECONDS, allow_inf_nan=False)]

#: a secret file larger than this is not a password or a token
MAX_SECRET_FILE_BYTES = 64 * 1024


class Strict(BaseModel):
    """The base of every configuration model: an unknown key is an error naming it,
    a value is never changed after load, and no float setting may be inf or nan."""

    # unknown keys are errors; no float setting anywhere may be inf or nan
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def _check_secret(value: str, what: str, token: bool) -> str:
    """``value`` if it can be sent as it is; a ValueError naming ``what``, never the value."""
    if not value:
        raise ValueError(f"{what} is empty")
    if any(c in value for c in "\r\n"):
        raise ValueError(f"{what} must be one line")
    if token:
        if not all("!" <= c <= "~" for c in value):
            raise ValueError(f"{what}: a bearer token must be printable ASCII without spaces or control characters")
    elif any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in value):
        raise ValueError(f"{what} must not contain control characters")
    return value


def read_secret_file(path: Path, key: str, token: bool = False) -> str:
    """The secret in ``path``: UTF-8, surrounding whitespace (the trailing newline)
    stripped, one line. Errors name ``key`` and the path, never the content."""
    what = f"{key} {path}"
    if not path.is_file():
        raise ValueError(f"{what} does not exist")
    try:
        with path.open("rb") as f:
            data = f.read(MAX_SECRET_FILE_BYTES + 1)
    except OSError as e:
        raise ValueError(f"{what} cannot be read: {e.strerror}") from None
    if len(data) > MAX_SECRET_FILE_BYTES:
        raise ValueError(f"{what} is larger than {MAX_SECRET_FILE_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{what} is not UTF-8 text") from None
    return _check_secret(text.strip(), what, token)


class BasicAuth(Strict):
    """``basic_auth:`` of an HTTP target: ``username`` and ``password`` or
    ``password_file`` (read at load; the password is never echoed in errors, logs
    or metrics). Sent only to the target's own origin."""

    username: str
    password: Optional[SecretStr] = None
    password_file: Optional[Path] = None
    _password: Optional[SecretStr] = PrivateAttr(default=None)

    @field_validator("password")
    @classmethod
    def _password_value(cls, v: Optional[SecretStr]) -> Optional[SecretStr]:
        if v is not None:
            _check_secret(v.get_secret_value(), "password", token=False)
        return v

    @field_validator("password_file")
    @classmethod
    def _password_file(cls, v: Optional[Path]) -> Optional[Path]:
        if v is not None:
            read_secret_file(v, "password_file")
        return v

    @model_validator(mode="after")
    def _one_password(self):
        if self.password is not None and self.password_file is not None:
            raise ValueError("give either password or password_file, not both")
        if self.password_file is not None:
            self._password = SecretStr(read_secret_file(self.password_file, "password_file"))
        else:
            self._password = self.password
        return self

    def resolve_password(self) -> str:
        """The password: given inline, or as read from password_file when the configuration was loaded."""
        return self._password.get_secret_value() if self._password is not None else ""


class TLSConfig(Strict):
    """``tls_config:`` of an HTTPS target: the CA to verify it with, a client
    certificate and key, the server name to expect, or ``insecure_skip_verify``."""

    ca_file: Optional[Path] = None
    cert_file: Optional[Path] = None
    key_file: Optional[Path] = None
    insecure_skip_verify: bool = False

    @model_validator(mode="after")
    def _files(self):
        for key in ("ca_file", "cert_file", "key_file"):
            p = getattr(self, key)
            if p is not None and not p.is_file():
                raise ValueError(f"{key} {p} does not exist")
        if self.key_file is not None and self.cert_file is None:
            raise ValueError("key_file needs cert_file")
        return self


def redact_url(url: str) -> str:
    """``url`` without what a ``user:password@`` part holds, for messages."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    authority, slash, path = rest.partition("/")
    if "@" in authority:
        authority = "***@" + authority.rpartition("@")[2]
    return scheme + sep + authority + slash + path


def check_http_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"must be an http:// or https:// URL, got {redact_url(url)!r}")
    if not parts.hostname:
        raise ValueError(f"has no host: {redact_url(url)!r}")
    if parts.username or parts.password:
        raise ValueError("must not carry credentials; use basic_auth")
    if "?" in url or "#" in url:
        # the exporter appends its paths to the URL: http://rm:8088/?user.name=x would become
        # http://rm:8088/?user.name=x/ws/v1/cluster/apps
        hint = ("; for Hadoop's pseudo authentication (?user.name=...) set user_name instead"
                if "user.name=" in url else "")
        raise ValueError(f"must not have a query or fragment (the exporter appends its own paths to it){hint}: "
                         f"{redact_url(url)!r}")
    try:
        parts.port
    except ValueError:
        raise ValueError(f"has an invalid port: {redact_url(url)!r}") from None
    from .urlpattern import resolve

    try:  # where requests would connect to, as every request decides it
        resolve(url)
    except ValueError as e:
        raise ValueError(f"{e}: {redact_url(url)!r}") from None
    return url.rstrip("/")


class KerberosAuth(Strict):
    """``kerberos:``: SPNEGO (``WWW-Authenticate: Negotiate``) to the target's own origin(s), as
    :mod:`sparkwatch.kerberos` does it: ``principal`` with its ``keytab``, or a ticket cache
    (``ccache``) kept fresh by something else (kinit, k5start, sssd). Checked when the
    configuration is loaded: the realm configuration (``/etc/krb5.conf``, or ``KRB5_CONFIG``)
    exists, the keytab exists, is readable, is a keytab and holds a key of the principal; the
    ticket cache exists and is readable (its tickets are checked at each request: they may be
    renewed after the exporter started)."""

    principal: Optional[str] = Field(default=None, min_length=1)
    keytab: Optional[Path] = None
    ccache: Optional[Path] = None
    #: whether the server must prove it holds the service's key: optional (when it sends a token),
    #: required, disabled
    mutual: Literal["optional", "required", "disabled"] = "optional"
    #: the host of the service principal HTTP/<host>, when it is not the URL's host (an alias, an address)
    service_host: Optional[str] = Field(default=None, min_length=1)
    _auth: Any = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _usable(self):
        from .kerberos import KerberosError, check_realm_config, spnego_auth

        if (self.keytab is None) == (self.ccache is None):
            raise ValueError("give keytab (with principal) or ccache, not both nor neither")
        if self.keytab is not None and not self.principal:
            raise ValueError("keytab needs principal (the principal whose key it holds: klist -k shows them)")
        try:
            check_realm_config()
            self._auth = spnego_auth(principal=self.principal, keytab=_str(self.keytab), ccache=_str(self.ccache),
                                     mutual=self.mutual, service_host=self.service_host, check_tickets=False)
        except KerberosError as e:
            raise ValueError(e.message) from None
        return self

    def auth(self):
        """The ``requests`` auth (one per configuration, shared by every thread of the target)."""
        return self._auth


def _str(p: Optional[Path]) -> Optional[str]:
    return None if p is None else str(p)


#: a user name as Hadoop's pseudo authentication sends it (?user.name=): no character that its
#: signed token (u=<user>&p=<user>&t=simple&...) or a query would read as a separator
_USER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@/-]{0,255}")


class TargetBase(Strict):
    """Fields every target has."""

    name: Optional[str] = Field(default=None, min_length=1)

    def display_name(self) -> str:  # overridden by kinds without a url
        return self.name or "default"


class HttpTarget(TargetBase):
    """A target reached over HTTP(S)."""

    url: str
    #: seconds, per request; the scrape deadline also applies
    timeout: Seconds = 10.0
    basic_auth: Optional[BasicAuth] = None
    bearer_token_file: Optional[Path] = None
    bearer_token_env: Optional[str] = None
    #: Kerberos (SPNEGO) to the target's own origin(s)
    kerberos: Optional[KerberosAuth] = None
    #: Hadoop's pseudo authentication (hadoop.http.authentication.type: simple): sent as
    #: ?user.name= when the server asks for it (401 PseudoAuth), to the target's own origin(s)
    user_name: Optional[str] = None
    tls_config: TLSConfig = TLSConfig()
    #: URL patterns (scheme://host[:port][/path]) a redirect from this target may lead to;
    #: unset = any http(s) URL. Credentials never follow a redirect to another origin.
    redirects_allowed_to: Optional[List[str]] = None
    _token: Optional[SecretStr] = PrivateAttr(default=None)

    @field_validator("redirects_allowed_to")
    @classmethod
    def _redirect_patterns(cls, v: Optional[List[str]]) -> Optional[List[str]]:
        from .urlpattern import parse_pattern

        for p in v or []:
            parse_pattern(p)
        return v

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        return check_http_url(v)

    @field_validator("user_name")
    @classmethod
    def _user_name(cls, v: Optional[str]) -> Optional[str]:
        if v is not None and not _USER_NAME.fullmatch(v):
            raise ValueError("must be a user name: letters, digits and . _ @ / - (at most 256)")
        return v

    @field_validator("bearer_token_file")
    @classmethod
    def _token_file(cls, v: Optional[Path]) -> Optional[Path]:
        if v is not None:
            read_secret_file(v, "bearer_token_file", token=True)
        return v

    @field_validator("bearer_token_env")
    @classmethod
    def _token_env(cls, v: Optional[str]) -> Optional[str]:
        if v is not None:
            _env_token(v)
        return v

    @model_validator(mode="after")
    def _auth(self):
        given = [k for k in ("basic_auth", "bearer_token_file", "bearer_token_env", "kerberos", "user_name")
                 if getattr(self, k) is not None]
        if len(given) > 1:
            raise ValueError(f"give only one of {', '.join(given)}")
        if self.bearer_token_file is not None:
            self._token = SecretStr(read_secret_file(self.bearer_token_file, "bearer_token_file", token=True))
        elif self.bearer_token_env is not None:
            self._token = SecretStr(_env_token(self.bearer_token_env))
        return self

    def display_name(self) -> str:
        if self.name:
            return self.name
        parts = urlsplit(self.url)
        return parts.netloc + parts.path

    def bearer_token(self) -> Optional[str]:
        """The token, as read from bearer_token_file or bearer_token_env when the configuration was loaded."""
        return self._token.get_secret_value() if self._token is not None else None

    def own_urls(self) -> List[str]:
        """The URLs of the target's own origins: the only ones its credentials go to."""
        return [self.url]

    def relayed_paths(self) -> List[str]:
        """Paths of the target's own origins that its server relays, headers and all, to an address
        someone else chose (a standalone master's reverse proxy): the HTTP client sends no
        credentials there, only the client certificate (:func:`sparkwatch.urlpattern.routed_under`
        reads paths the widest way servers do)."""
        return []

    def session_auth(self):
        """The ``requests`` auth for the target's own origins besides basic auth and a bearer
        token (which the HTTP client sets itself): Kerberos or pseudo authentication, or None."""
        if self.kerberos is not None:
            return self.kerberos.auth()
        if self.user_name is not None:
            from .hadoopauth import PseudoAuth

            return PseudoAuth(self.user_name)
        return None

    def auth_names(self) -> List[str]:
        """The keys of the authentication this target is configured with (for messages)."""
        return [k for k in ("basic_auth", "bearer_token_file", "bearer_token_env", "kerberos", "user_name")
                if getattr(self, k) is not None]


def _env_token(name: str) -> str:
    if name not in os.environ:
        raise ValueError(f"environment variable {name} is not set")
    return _check_secret(os.environ[name].strip(), f"environment variable {name}", token=True)
