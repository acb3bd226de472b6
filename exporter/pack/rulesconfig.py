"""The rules configuration: what a user (or the incident lab) may customise.

Example (every key optional)::

    time_scale: 1.0          # multiplies every window, horizon, duration threshold and `for:`
                             # (not those tied to a setting: trigger_interval, max_periodic_gc_interval,
                             #  SparkStreamingQueryStalled's window)
    interval: 1m             # evaluation interval of the rule groups (default: Prometheus' global)
    selector: 'job="sparkwatch"'   # label matchers added to every metric the rules read
    selectors:               # ... and per metric prefix
      spark: 'env="prod"'
    labels: {team: data}     # extra labels on every alert
    runbook_base_url: https://git.example.com/sparkwatch/blob/main/alerts/runbooks
    alerts:
      SparkJobRunningTooLong:
        for: 10m
        selector: 'app_name!~"nightly-.*"'
        params: {max_age: 3h}
      SparkCleanerSettingsRisky:
        enabled: false

Unknown keys, unknown alerts and unknown parameters are errors that name the key.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Dict, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator

from ..config import ConfigError, format_validation_error, read_yaml_file
from .alerts import ALERTS
from .model import Param
from .promql import PREFIXES, check_matchers, parse_duration

DEFAULT_RUNBOOK_BASE_URL = "https://github.com/sparkwatch/sparkwatch/blob/main/alerts/runbooks"


class Strict(BaseModel):
    """The base of every model of the rules configuration: an unknown key is an error
    naming it, values cannot be changed after loading."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _duration(v: Any) -> str:
    if not isinstance(v, str):
        raise ValueError(f"must be a Prometheus duration such as 30s, 5m, 6h, got {v!r}")
    parse_duration(v)
    return v


def _regex(v: Any) -> str:
    if not isinstance(v, str):
        raise ValueError("must be a string (a regular expression)")
    try:
        re.compile(v)
    except re.error as e:
        raise ValueError(f"not a valid regular expression: {e}") from None
    if '"' in v:
        raise ValueError('must not contain a double quote')
    return v


def _labels(v: Any) -> str:
    if not isinstance(v, str) or not re.match(r"^\s*[a-zA-Z_][a-zA-Z0-9_]*(\s*,\s*[a-zA-Z_][a-zA-Z0-9_]*)*\s*$", v):
        raise ValueError(f"must be a comma-separated list of label names, got {v!r}")
    return v


def _matchers(v: Any) -> str:
    if not isinstance(v, str):
        raise ValueError("must be a string of label matchers")
    return check_matchers(v)


_CHECKS = {"duration": _duration, "regex": _regex, "labels": _labels, "matchers": _matchers}


def _param_field(p: Param):
    if p.kind == "number":
        return (Optional[float], Field(default=None, description=p.help))
    return (Optional[str], Field(default=None, description=p.help))


def _params_model(alert) -> type:
    validators = {}
    for name, p in alert.params.items():
        check = _CHECKS.get(p.kind)
        if check is not None:
            validators[f"_check_{name}"] = field_validator(name)(
                classmethod(lambda cls, v, _c=check: v if v is None else _c(v)))
    fields = {name: _param_field(p) for name, p in alert.params.items()}
    return create_model(f"{alert.name}Params", __base__=Strict, __validators__=validators, **fields)


class _AlertBase(Strict):
    enabled: bool = True
    severity: Optional[Literal["critical", "warning"]] = None
    for_: Optional[str] = Field(default=None, alias="for")
    selector: str = ""
    labels: Dict[str, str] = {}

    @field_validator("for_")
    @classmethod
    def _for(cls, v):
        return v if v is None else _duration(v)

    @field_validator("selector")
    @classmethod
    def _sel(cls, v):
        return _matchers(v)


def _alert_model(alert) -> type:
    pm = _params_model(alert)
    return create_model(f"{alert.name}Settings", __base__=_AlertBase, params=(pm, pm()))


ALERT_MODELS = {a.name: _alert_model(a) for a in ALERTS}
AlertsModel = create_model("AlertsSettings", __base__=Strict,
                           **{name: (Optional[m], None) for name, m in ALERT_MODELS.items()})


class _SelectorsBase(Strict):
    @field_validator("*")
    @classmethod
    def _m(cls, v):
        return _matchers(v)


# one key per metric prefix (the target kinds of exporter/kinds.py, and sparkwatch)
Selectors = create_model("Selectors", __base__=_SelectorsBase, **{p: (str, "") for p in PREFIXES})


class RulesConfig(Strict):
    """The whole rules configuration file (the top level; the example is in this
    module's docstring). ``RulesConfig()`` is the shipped defaults, from which the
    committed ``alerts/`` and ``dashboards/`` are generated."""

    time_scale: float = Field(default=1.0, gt=0)
    interval: Optional[str] = None
    selector: str = ""
    selectors: Selectors = Selectors()  # type: ignore[valid-type]
    labels: Dict[str, str] = {}
    runbook_base_url: str = DEFAULT_RUNBOOK_BASE_URL
    group_prefix: str = Field(default="sparkwatch", pattern=r"^[A-Za-z0-9_.:-]+$")
    alerts: AlertsModel = AlertsModel()  # type: ignore[valid-type]

    @field_validator("interval")
    @classmethod
    def _interval(cls, v):
        return v if v is None else _duration(v)

    @field_validator("selector")
    @classmethod
    def _sel(cls, v):
        return _matchers(v)

    @field_validator("labels")
    @classmethod
    def _lbl(cls, v):
        for k in v:
            if not re.match(r"^[a-zA-Z_][a-zA-Z0-9_]*$", k):
                raise ValueError(f"{k!r} is not a valid label name")
        return v

    def alert(self, name: str):
        """The settings of alert ``name`` (``alerts.<name>``), its defaults when not given."""
        got = getattr(self.alerts, name)
        return got if got is not None else ALERT_MODELS[name]()


def parse_rules_config(data: Any, source: str = "rules config") -> RulesConfig:
    """The rules configuration from a YAML document (None: the defaults); ``source``
    names it in errors. Raises :class:`~sparkwatch.config.ConfigError` naming each key."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping, got {type(data).__name__}")
    try:
        return RulesConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, source, key_names={"for_": "for"})) from None


def load_rules_config(path: Optional[Union[str, Path]]) -> RulesConfig:
    """The rules configuration of the YAML file ``path``; None: the shipped defaults."""
    if path is None:
        return RulesConfig()
    return parse_rules_config(read_yaml_file(path), str(path))
