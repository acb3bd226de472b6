"""Configuration: YAML, validated before anything starts.

The file has one section for the exporter itself (``exporter``) and one list
of targets per collector kind (``spark``, ``livy``, ``zookeeper``, ``jvm``).
Every model forbids unknown keys, so a typo is an error that names the key,
never a silently ignored setting. Secrets (passwords, tokens) are held as
:class:`pydantic.SecretStr` and only revealed when a request is built.
"""

from __future__ import annotations

import fnmatch
import os
from pathlib import Path
from typing import Any, Dict, List, Optional
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, create_model, field_validator, model_validator


class ConfigError(Exception):
    """A configuration that cannot be used. The message names the key."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------
# Building blocks shared by the target kinds


class BasicAuth(Strict):
    username: str
    password: Optional[SecretStr] = None
    password_file: Optional[Path] = None

    @model_validator(mode="after")
    def _one_password(self):
        if self.password is not None and self.password_file is not None:
            raise ValueError("give either password or password_file, not both")
        if self.password_file is not None and not self.password_file.is_file():
            raise ValueError(f"password_file {self.password_file} does not exist")
        return self

    def resolve_password(self) -> str:
        if self.password_file is not None:
            return self.password_file.read_text().strip()
        return self.password.get_secret_value() if self.password is not None else ""


class TLSConfig(Strict):
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


def check_http_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"must be an http:// or https:// URL, got {url!r}")
    if not parts.hostname:
        raise ValueError(f"has no host: {url!r}")
    if parts.username or parts.password:
        raise ValueError("must not carry credentials; use basic_auth")
    try:
        parts.port
    except ValueError:
        raise ValueError(f"has an invalid port: {url!r}") from None
    return url.rstrip("/")


class TargetBase(Strict):
    """Fields every target has."""

    name: Optional[str] = Field(default=None, min_length=1)

    def display_name(self) -> str:  # overridden by kinds without a url
        return self.name or "default"


class HttpTarget(TargetBase):
    """A target reached over HTTP(S)."""

    url: str
    timeout: float = Field(default=10.0, gt=0, description="seconds, per request; the scrape deadline also applies")
    basic_auth: Optional[BasicAuth] = None
    bearer_token_file: Optional[Path] = None
    bearer_token_env: Optional[str] = None
    tls_config: TLSConfig = TLSConfig()

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        return check_http_url(v)

    @model_validator(mode="after")
    def _auth(self):
        given = [k for k in ("basic_auth", "bearer_token_file", "bearer_token_env") if getattr(self, k) is not None]
        if len(given) > 1:
            raise ValueError(f"give only one of {', '.join(given)}")
        if self.bearer_token_file is not None and not self.bearer_token_file.is_file():
            raise ValueError(f"bearer_token_file {self.bearer_token_file} does not exist")
        if self.bearer_token_env is not None and self.bearer_token_env not in os.environ:
            raise ValueError(f"bearer_token_env: environment variable {self.bearer_token_env} is not set")
        return self

    def display_name(self) -> str:
        if self.name:
            return self.name
        parts = urlsplit(self.url)
        return parts.netloc + parts.path

    def bearer_token(self) -> Optional[str]:
        if self.bearer_token_file is not None:
            return self.bearer_token_file.read_text().strip()
        if self.bearer_token_env is not None:
            return os.environ.get(self.bearer_token_env, "").strip()
        return None


# --------------------------------------------------------------------------
# The exporter's own section


class ProbeSettings(Strict):
    #: glob patterns (fnmatch) a /probe target URL must match; empty = /probe disabled
    allowed_targets: List[str] = []
    #: per kind, target settings (auth, TLS, options) applied to probed URLs
    modules: Dict[str, Dict[str, Any]] = {}
    #: probed targets kept (with their state and connections) at most
    max_cached_targets: int = Field(default=64, ge=1)

    def allows(self, url: str) -> bool:
        return any(fnmatch.fnmatchcase(url, p) for p in self.allowed_targets)


class ExporterSettings(Strict):
    #: the scrape deadline when Prometheus sends no X-Prometheus-Scrape-Timeout-Seconds,
    #: and the upper bound when it does
    scrape_timeout: float = Field(default=10.0, gt=0)
    #: kept free of the Prometheus timeout so that the answer arrives in time
    timeout_offset: float = Field(default=0.5, ge=0)
    probe: ProbeSettings = ProbeSettings()


# --------------------------------------------------------------------------
# The whole file


def _kinds():
    from .collectors import KINDS

    return KINDS


_config_model = None


def config_model():
    """The top-level model: ``exporter`` plus one list per collector kind."""
    global _config_model
    if _config_model is None:
        fields = {"exporter": (ExporterSettings, ExporterSettings())}
        for kind, cls in _kinds().items():
            fields[kind] = (List[cls.config_model], [])
        _config_model = create_model(
            "SparkwatchConfig", __config__=ConfigDict(extra="forbid", frozen=True), **fields
        )
    return _config_model


DEFAULT_CONFIG: Dict[str, Any] = {
    "spark": [{"url": "http://localhost:4040"}],
    "jvm": [{"discover": True, "attach": False}],
}


def _format_errors(err: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid configuration"]
    for e in err.errors():
        loc = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in e["loc"]).replace(".[", "[")
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        lines.append(f"  {loc or '(top level)'}: {msg}")
    return "\n".join(lines)


def parse_config(data: Any, source: str = "config"):
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of sections, got {type(data).__name__}")
    try:
        cfg = config_model().model_validate(data)
    except ValidationError as e:
        raise ConfigError(_format_errors(e, source)) from None
    _check_unique_names(cfg, source)
    return cfg


def _check_unique_names(cfg, source: str) -> None:
    for kind in _kinds():
        seen: Dict[str, int] = {}
        for i, t in enumerate(getattr(cfg, kind)):
            n = t.display_name()
            if n in seen:
                raise ConfigError(
                    f"{source}: invalid configuration\n  {kind}[{i}].name: target name {n!r} "
                    f"is already used by {kind}[{seen[n]}]; give each target a distinct name"
                )
            seen[n] = i


def read_yaml_file(path) -> Any:
    """The parsed content of a YAML file; ConfigError if it cannot be read or parsed."""
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None


def load_config(path: Optional[str]):
    """Load and validate ``path``, or the default configuration when ``path`` is None."""
    if path is None:
        return parse_config(DEFAULT_CONFIG, "default configuration")
    return parse_config(read_yaml_file(path), path)


def iter_targets(cfg):
    """(kind, target config) for every configured target."""
    for kind in _kinds():
        for t in getattr(cfg, kind):
            yield kind, t
