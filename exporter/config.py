"""Configuration: YAML, validated before anything starts.

The file has one section for the exporter itself (``exporter``) and one list
of targets per collector kind (``spark``, ``livy``, ``zookeeper``, ``jvm``).
Every model forbids unknown keys, so a typo is an error that names the key,
never a silently ignored setting; a key given twice in one mapping is an error
too. Secrets (passwords, tokens) are held as :class:`pydantic.SecretStr` and
only revealed when a request is built; no error message ever quotes one (YAML
errors give the position, not the line; validation errors never echo a
secret's value).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Dict, List, Optional, Set, Tuple

import yaml
from pydantic import AfterValidator, ConfigDict, Field, ValidationError, create_model

from .collectors import COLLECTOR_KINDS
from .targetconfig import Seconds, SecondsOrZero, Strict
from .urlpattern import parse_pattern


class ConfigError(Exception):
    """A configuration that cannot be used. The message names the key."""


# --------------------------------------------------------------------------
# The exporter's own section


def _target_pattern(p: str) -> str:
    parse_pattern(p)  # ValueError says what is wrong
    return p


TargetPattern = Annotated[str, AfterValidator(_target_pattern)]


class ProbeSettings(Strict):
    """``exporter.probe``: what ``/probe?module=<kind>&target=<url>`` may scrape.

    /probe is off until ``allowed_targets`` names something: whoever reaches the
    exporter chooses the target, and the module's credentials go to it. The
    patterns are matched on the parsed URL (never as text), and each module is
    validated against its kind's target model when the file is loaded.
    """

    #: URL patterns (sparkwatch.urlpattern: scheme://host[:port][/path], '*' within one host label or as
    #: the whole port; host:port for zookeeper) a /probe target must match; empty = /probe disabled
    allowed_targets: List[TargetPattern] = []
    #: per kind, target settings (auth, TLS, options) applied to probed URLs;
    #: checked against the kind's target model when the configuration is loaded
    modules: Dict[str, Dict[str, Any]] = {}
    #: probed targets kept (with their state and connections) at most
    max_cached_targets: int = Field(default=64, ge=1)

    def allows(self, target: str) -> bool:
        """Whether a URL (or, for zookeeper, every host:port of a comma-separated list)
        matches one of the allowed patterns, compared part by part on the parsed URL."""
        patterns = [parse_pattern(p) for p in self.allowed_targets]
        if "://" in target:
            return any(p.matches(target) for p in patterns)
        hosts = target.split(",")
        return all(h and any(p.matches_host(h) for p in patterns) for h in hosts)


class ExporterSettings(Strict):
    """``exporter``: the exporter's own section (the scrape deadline, /probe); the
    other top-level keys are the lists of targets, one per kind."""

    #: the scrape deadline when Prometheus sends no X-Prometheus-Scrape-Timeout-Seconds,
    #: and the upper bound when it does
    scrape_timeout: Seconds = 10.0
    #: kept free of the Prometheus timeout so that the answer arrives in time
    timeout_offset: SecondsOrZero = 0.5
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


#: keys whose values are secrets: never quoted in a message
SECRET_KEYS = frozenset({"password"})
#: ``user:password@`` in a URL
_USERINFO = re.compile(r"(?<=://)[^\s/@'\"]+@")


def collect_secrets(data: Any) -> Set[str]:
    """The string values of :data:`SECRET_KEYS` anywhere in ``data`` (each shared
    node visited once: YAML aliases cannot make this exponential)."""
    found: Set[str] = set()
    seen: Set[int] = set()
    stack = [data]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, dict):
            for k, v in node.items():
                if k in SECRET_KEYS and isinstance(v, str) and v:
                    found.add(v)
                elif isinstance(v, (dict, list)):
                    stack.append(v)
        elif isinstance(node, list):
            stack.extend(x for x in node if isinstance(x, (dict, list)))
    return found


def scrub(text: str, secrets=()) -> str:
    """``text`` without the given secrets and without the credentials of a URL."""
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= 4:
            text = text.replace(secret, "***")
        else:  # too short to cut out of words: only where it is quoted
            text = text.replace(repr(secret), "'***'").replace(f'"{secret}"', '"***"')
    return _USERINFO.sub("***@", text)


def _error_lines(err: ValidationError, key_names: Dict[str, str], prefix: Tuple = (), secrets=()) -> List[str]:
    lines = []
    for e in err.errors(include_url=False, include_input=False):
        loc = ".".join(f"[{p}]" if isinstance(p, int) else key_names.get(str(p), str(p))
                       for p in (*prefix, *e["loc"])).replace(".[", "[")
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        lines.append(scrub(f"  {loc or '(top level)'}: {msg}", secrets))
    return lines


def format_validation_error(err: ValidationError, source: str, key_names: Optional[Dict[str, str]] = None,
                            secrets=()) -> str:
    """A pydantic error as lines that each name the key (``spark[1].url: ...``).

    ``key_names`` maps model field names to the names users write, for fields
    whose YAML key is not a Python identifier (``for_`` -> ``for``). Input
    values are never added (pydantic's ``input_value``); the ``secrets`` given
    and URL credentials are cut from what validators wrote.
    """
    return "\n".join([f"{source}: invalid configuration", *_error_lines(err, key_names or {}, (), secrets)])


def parse_config(data: Any, source: str = "config"):
    """The configuration from the YAML document ``data`` (None: all defaults), as a
    :class:`SparkwatchConfig`; ``source`` names it in errors. Raises
    :class:`ConfigError` with one line per problem, each naming its key and never
    echoing a secret (the command line prints it and exits 2)."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of sections, got {type(data).__name__}")
    secrets = collect_secrets(data)
    try:
        cfg = SparkwatchConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, source, secrets=secrets)) from None
    _check_probe_modules(cfg, source, secrets)
    _check_unique_names(cfg, source)
    return cfg


#: what a probe module is checked with in place of the target /probe fills in
_PROBE_PLACEHOLDER = {"url": "http://probe.invalid", "hosts": ["probe.invalid:2181"]}


def _check_probe_modules(cfg, source: str, secrets) -> None:
    """Each ``exporter.probe.modules`` entry: a kind /probe can scrape, and valid
    target settings for it (files exist, types are right) once /probe has added
    the target."""
    lines: List[str] = []
    probeable = sorted(k for k, c in COLLECTOR_KINDS.items() if c.probe_field)
    for kind, module in cfg.exporter.probe.modules.items():
        key = f"exporter.probe.modules.{kind}"
        cls = COLLECTOR_KINDS.get(kind)
        if cls is None:
            lines.append(f"  {key}: unknown kind; modules are for {', '.join(probeable)}")
            continue
        if cls.probe_field is None:
            lines.append(f"  {key}: {kind} targets cannot be probed; modules are for {', '.join(probeable)}")
            continue
        for field in (cls.probe_field, "name"):
            if field in module:
                lines.append(f"  {key}.{field}: set by /probe from its target parameter; remove it here")
        template = {k: v for k, v in module.items() if k not in (cls.probe_field, "name")}
        template[cls.probe_field] = _PROBE_PLACEHOLDER.get(cls.probe_field, "probe.invalid")
        try:
            cls.config_model.model_validate(template)
        except ValidationError as e:
            lines.extend(_error_lines(e, {}, ("exporter", "probe", "modules", kind), secrets))
    if lines:
        raise ConfigError("\n".join([f"{source}: invalid configuration", *lines]))


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


# --------------------------------------------------------------------------
# YAML: errors give the position and the problem, never the text of the line
# (it may be a password)

#: mappings and sequences nested deeper than this are not a configuration
MAX_YAML_DEPTH = 100


class _Rejected(yaml.MarkedYAMLError):
    """Our own YAML error; its problem text is ours, safe to show as it is."""


class _Loader(yaml.SafeLoader):
    """safe_load, but a key given twice in a mapping and deep nesting are errors."""

    _depth = 0

    def compose_node(self, parent, index):
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                raise _Rejected(problem=f"nested deeper than {MAX_YAML_DEPTH} levels",
                                problem_mark=self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            first_line: Dict[Any, int] = {}
            for key_node, _ in node.value:
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # merged keys may be overridden; complex keys are the constructor's business
                key = self.construct_object(key_node)
                if key in first_line:
                    raise _Rejected(problem=f"duplicate key {key!r} (first given on line {first_line[key] + 1})",
                                    problem_mark=key_node.start_mark)
                first_line[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)

    def construct_object(self, node, deep=False):
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, TypeError, OverflowError) as e:  # e.g. a date 2024-13-45
            raise _Rejected(problem=f"a {node.id} that cannot be read ({type(e).__name__})",
                            problem_mark=node.start_mark) from None


#: quoted fragments PyYAML's messages may hold that are not from the input
_SAFE_QUOTED = re.compile(r"^(<[a-z ]+>|[-,:?\[\]{}]|\\[a-z0-9]+)$")


def _redact_quoted(text: str) -> str:
    """PyYAML quotes pieces of the input in its messages (tags, anchors,
    characters): keep only token names, indicators and escapes."""
    return re.sub(r"'((?:[^'\\]|\\.)*)'",
                  lambda m: m.group(0) if _SAFE_QUOTED.match(m.group(1)) else "'...'", text)


def _yaml_error(path, text: str, e: Exception) -> str:
    """Where and what, never the offending line."""
    def at(mark) -> str:
        return f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "unknown position"

    if isinstance(e, _Rejected):
        return f"{path}: not valid YAML at {at(e.problem_mark)}: {e.problem}"
    if isinstance(e, yaml.MarkedYAMLError):
        mark = e.problem_mark or e.context_mark
        msg = f"{path}: not valid YAML at {at(mark)}: {_redact_quoted(e.problem or 'syntax error')}"
        if e.context:
            ctx = _redact_quoted(e.context)
            msg += f" ({ctx} at {at(e.context_mark)})" if e.context_mark is not None else f" ({ctx})"
        return msg
    if isinstance(e, yaml.reader.ReaderError):
        return f"{path}: not valid YAML at {_position(text, e.position)}: a control character (not allowed in YAML)"
    if isinstance(e, RecursionError):
        return f"{path}: not valid YAML: nested too deeply"
    return f"{path}: not valid YAML ({type(e).__name__})"


def _position(data, offset: int) -> str:
    """``line L, column C`` of ``offset`` in ``data`` (str or bytes)."""
    nl = "\n" if isinstance(data, str) else b"\n"
    start = data.rfind(nl, 0, offset) + 1
    return f"line {data.count(nl, 0, offset) + 1}, column {offset - start + 1}"


def read_yaml_file(path) -> Any:
    """The parsed content of a YAML file; ConfigError if it cannot be read or parsed.

    No message quotes the file's content: a broken line may hold a password."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (at {_position(data, e.start)})") from None
    if text.startswith("\ufeff"):
        text = text[1:]
    try:
        loader = _Loader(text)  # checks for control characters already
        try:
            return loader.get_single_data()
        finally:
            loader.dispose()
    except (yaml.YAMLError, RecursionError) as e:
        raise ConfigError(_yaml_error(path, text, e)) from None


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
