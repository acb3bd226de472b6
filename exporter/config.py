"""Configuration: YAML, validated before anything starts.

The file has one section for the exporter itself (``exporter``) and one list
of targets per collector kind (``spark``, ``livy``, ``zookeeper``, ``jvm``).
Every model forbids unknown keys, so a typo is an error that names the key,
never a silently ignored setting. Secrets (passwords, tokens) are held as
:class:`pydantic.SecretStr` and only revealed when a request is built.
"""

from __future__ import annotations

import fnmatch
from pathlib import Path
from typing import Any, Dict, List, Optional

import yaml
from pydantic import ConfigDict, Field, ValidationError, create_model

from .collectors import COLLECTOR_KINDS
from .targetconfig import Strict


class ConfigError(Exception):
    """A configuration that cannot be used. The message names the key."""


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


def _top_level_model():
    """``exporter`` plus one list per registered collector kind."""
    fields: Dict[str, Any] = {"exporter": (ExporterSettings, ExporterSettings())}
    for kind, cls in COLLECTOR_KINDS.items():
        fields[kind] = (List[cls.config_model], [])
    return create_model("SparkwatchConfig", __config__=ConfigDict(extra="forbid", frozen=True), **fields)


#: The model of the whole configuration file.
SparkwatchConfig = _top_level_model()


DEFAULT_CONFIG: Dict[str, Any] = {
    "spark": [{"url": "http://localhost:4040"}],
    "jvm": [{"discover": True, "attach": False}],
}


def format_validation_error(err: ValidationError, source: str, key_names: Optional[Dict[str, str]] = None) -> str:
    """A pydantic error as lines that each name the key (``spark[1].url: ...``).

    ``key_names`` maps model field names to the names users write, for fields
    whose YAML key is not a Python identifier (``for_`` -> ``for``).
    """
    key_names = key_names or {}
    lines = [f"{source}: invalid configuration"]
    for e in err.errors():
        loc = ".".join(f"[{p}]" if isinstance(p, int) else key_names.get(str(p), str(p))
                       for p in e["loc"]).replace(".[", "[")
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
        cfg = SparkwatchConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, source)) from None
    _check_unique_names(cfg, source)
    return cfg


def _check_unique_names(cfg, source: str) -> None:
    for kind in COLLECTOR_KINDS:
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
    for kind in COLLECTOR_KINDS:
        for t in getattr(cfg, kind):
            yield kind, t
