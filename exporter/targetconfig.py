"""The configuration pieces every target kind builds on: strict models, basic
auth, TLS, an HTTP(S) target. Collector modules import these to define their
target models; :mod:`exporter.config` assembles the whole file from the kinds
registered in :mod:`exporter.collectors`.

Secrets (passwords, tokens) are held as :class:`pydantic.SecretStr` or read
from files only when a request is built.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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
