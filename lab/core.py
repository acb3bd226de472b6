"""The lab's machinery: processes, the exporter, Prometheus with the pack's rules,
the alert watcher, and the result table.

Every process the lab starts runs in its own process group and is registered
in :data:`PROCS`; :func:`cleanup` (run on exit, on SIGTERM/SIGINT and on
failure) kills every group. Every wait has a timeout.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import requests
import yaml

from testbed.procs import free_port, stop_process_group
from testbed.prometheus import command as prometheus_command
from testbed.spark import SPARK_PYTHONS

ROOT = Path(__file__).resolve().parent.parent
LAB = Path(__file__).resolve().parent
RULES_CONFIG = LAB / "lab-rules.yml"
PYTHON = sys.executable
SPARK_PYTHON = SPARK_PYTHONS["4.0"]

#: the lab's time scale (lab-rules.yml): lab seconds per production second
TIME_SCALE: float = float(yaml.safe_load(RULES_CONFIG.read_text())["time_scale"])

#: every process group the lab started and has not reaped yet
PROCS: List[subprocess.Popen] = []
_lock = threading.Lock()


class LabError(Exception):
    pass


def log(msg: str) -> None:
    print(f"[lab {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# Processes


def start(cmd: List[str], logfile: Path, env: Optional[Dict[str, str]] = None, stdin=subprocess.DEVNULL,
          stdout=None, text: bool = True, cwd: Optional[str] = None, grace: float = 2.0) -> subprocess.Popen:
    """Start ``cmd`` in a new process group; output to ``logfile`` unless stdout is given."""
    logfile.parent.mkdir(parents=True, exist_ok=True)
    out = open(logfile, "ab")
    try:
        p = subprocess.Popen(cmd, stdin=stdin, stdout=stdout if stdout is not None else out,
                             stderr=out, env=env, cwd=cwd or str(ROOT), start_new_session=True, text=text)
    finally:
        out.close()
    p.lab_grace = grace  # type: ignore[attr-defined]
    with _lock:
        PROCS.append(p)
    return p


def kill(p: subprocess.Popen, grace: float = 5.0) -> None:
    """SIGTERM the process group, then SIGKILL it; forget the process."""
    stop_process_group(p, grace)
    with _lock:
        if p in PROCS:
            PROCS.remove(p)


def cleanup() -> None:
    with _lock:
        procs = list(PROCS)
    for p in procs:
        kill(p, grace=getattr(p, "lab_grace", 2.0))


def _on_signal(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def install_handlers() -> None:
    atexit.register(cleanup)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)


def wait_for(what: str, check: Callable[[], Any], timeout: float, interval: float = 0.5,
             alive: Optional[subprocess.Popen] = None, logfile: Optional[Path] = None) -> Any:
    """Call ``check`` until it returns something truthy; LabError after ``timeout`` seconds."""
    end = time.monotonic() + timeout
    last_exc = None
    while time.monotonic() < end:
        if alive is not None and alive.poll() is not None:
            raise LabError(f"{what}: process exited with {alive.returncode}" + tail(logfile))
        try:
            got = check()
            if got:
                return got
        except Exception as e:  # noqa: BLE001 - anything that is not ready yet
            last_exc = e
        time.sleep(interval)
    raise LabError(f"{what}: not within {timeout:.0f}s" + (f" (last error: {last_exc})" if last_exc else "")
                   + tail(logfile))


def tail(logfile: Optional[Path], n: int = 25) -> str:
    if logfile is None:
        return ""
    try:
        lines = Path(logfile).read_text(errors="replace").splitlines()
    except OSError:
        return ""
    lines = [ln for ln in lines if not ln.startswith("\tat ")]
    return f"\n--- {logfile} (last lines) ---\n" + "\n".join(lines[-n:])


# --------------------------------------------------------------------------
# The exporter (the real one: `python -m sparkwatch`, as a user runs it)


class Exporter:
    def __init__(self, workdir: Path, config: Dict[str, Any]):
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config_file = workdir / "sparkwatch.yml"
        # Prometheus scrapes with a 3 s timeout: keep only 0.2 s of it for the answer
        config = {"exporter": {"timeout_offset": 0.2}, **config}
        self.config_file.write_text(yaml.safe_dump(config, sort_keys=False))
        self.log = workdir / "exporter.log"
        self.proc: Optional[subprocess.Popen] = None

    def start(self) -> "Exporter":
        self.proc = start([PYTHON, "-m", "sparkwatch", "--config.file", str(self.config_file),
                           "--web.listen-address", f"127.0.0.1:{self.port}"], self.log)
        wait_for("exporter", lambda: requests.get(self.url + "/", timeout=2).ok, 60, alive=self.proc,
                 logfile=self.log)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            kill(self.proc)


# --------------------------------------------------------------------------
# Prometheus with the pack's rules, generated through the rules config


@dataclass(frozen=True)
class View:
    """A second reading of the same scrapes: the lab's rules at another ``time_scale``,
    loaded beside the lab's own into the same Prometheus, each alert labelled
    ``lab_view=<name>``. The cluster's long baseline is one: the same minutes seen at
    1/120 are twice as many production hours as at 1/60."""

    name: str
    time_scale: float
    #: the scrape interval of the Prometheus (seconds): a window under three of them is
    #: raised to three (a rate needs two samples; at 1/120 a 10m window is 5 s)
    scrape_s: float = 3.0

    @property
    def hours_per_minute(self) -> float:
        """Production hours per lab minute."""
        return 1 / (60 * self.time_scale)


#: the label of the alerts of a :class:`View`; the lab's own alerts have none
VIEW_LABEL = "lab_view"


def view_rules_config(rules_config: Path, view: View, out: Path) -> Path:
    """``rules_config`` with ``view``'s time scale and label, written to ``out``."""
    from sparkwatch.pack.alerts import ALERTS
    from sparkwatch.pack.model import DURATION
    from sparkwatch.pack.promql import format_duration, parse_duration

    cfg = yaml.safe_load(rules_config.read_text())
    cfg["time_scale"] = view.time_scale
    cfg["labels"] = dict(cfg.get("labels") or {}, **{VIEW_LABEL: view.name})
    alerts = cfg.setdefault("alerts", {})
    shortest = 3 * view.scrape_s / view.time_scale  # three scrapes, in production seconds
    for a in ALERTS:
        settings = alerts.get(a.name) or {}
        params = dict(settings.get("params") or {})
        for name, p in a.params.items():
            if p.kind != DURATION or not p.scales:
                continue
            if parse_duration(str(params.get(name, p.default))) < shortest:
                params[name] = format_duration(shortest)
        if params:
            alerts[a.name] = dict(settings, params=params)
    out.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return out


def generate_rules(rules_config: Path, out: Path) -> None:
    """`sparkwatch rules --config lab-rules.yml --out FILE`, then `promtool check rules`."""
    r = subprocess.run([PYTHON, "-m", "sparkwatch", "rules", "--config", str(rules_config), "--out", str(out)],
                       capture_output=True, text=True, timeout=120, cwd=str(ROOT))
    if r.returncode != 0:
        raise LabError(f"sparkwatch rules failed: {r.stderr}")
    if shutil.which("promtool"):
        r = subprocess.run(["promtool", "check", "rules", str(out)], capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise LabError(f"promtool check rules failed: {r.stdout}{r.stderr}")


class Prometheus:
    def __init__(self, workdir: Path, exporter_url: str, rules_config: Path = RULES_CONFIG,
                 scrape_interval: str = "3s", evaluation_interval: str = "1s", views: Tuple[View, ...] = ()):
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.rules_file = workdir / "sparkwatch.rules.yml"
        generate_rules(rules_config, self.rules_file)
        rule_files = [str(self.rules_file)]
        for v in views:
            out = workdir / f"sparkwatch.rules.{v.name}.yml"
            generate_rules(view_rules_config(rules_config, v, workdir / f"lab-rules.{v.name}.yml"), out)
            rule_files.append(str(out))
        self.config_file = workdir / "prometheus.yml"
        target = exporter_url.split("//", 1)[1]
        self.config_file.write_text(yaml.safe_dump({
            "global": {"scrape_interval": scrape_interval, "scrape_timeout": scrape_interval,
                       "evaluation_interval": evaluation_interval},
            "rule_files": rule_files,
            "scrape_configs": [{"job_name": "sparkwatch", "static_configs": [{"targets": [target]}]}],
        }, sort_keys=False))
        self.log = workdir / "prometheus.log"
        self.proc: Optional[subprocess.Popen] = None

    def start(self) -> "Prometheus":
        self.proc = start(prometheus_command(self.config_file, self.workdir / "tsdb", self.port,
                                             "--storage.tsdb.retention.time=1d"), self.log)
        wait_for("prometheus", lambda: requests.get(self.url + "/-/ready", timeout=2).ok, 60, alive=self.proc,
                 logfile=self.log)
        groups = requests.get(self.url + "/api/v1/rules", timeout=5).json()["data"]["groups"]
        if not groups:
            raise LabError("prometheus loaded no rule groups" + tail(self.log))
        return self

    def alerts(self) -> List[Dict[str, Any]]:
        r = requests.get(self.url + "/api/v1/alerts", timeout=5)
        r.raise_for_status()
        return r.json()["data"]["alerts"]

    def rule_groups(self) -> List[Dict[str, Any]]:
        r = requests.get(self.url + "/api/v1/rules", timeout=5)
        r.raise_for_status()
        return r.json()["data"]["groups"]

    def query(self, expr: str) -> List[Dict[str, Any]]:
        r = requests.get(self.url + "/api/v1/query", params={"query": expr}, timeout=5)
        r.raise_for_status()
        return r.json()["data"]["result"]

    def stop(self) -> None:
        if self.proc is not None:
            kill(self.proc)


# --------------------------------------------------------------------------
# Watching the alerts


@dataclass
class Fired:
    alertname: str
    severity: str
    labels: Dict[str, str]
    active_at: float  # Unix time the alert became pending (Prometheus' activeAt)
    fired_at: float  # Unix time the lab first saw it firing
    summary: str = ""


def _parse_ts(s: str) -> float:
    # 2026-11-23T05:12:01.123456789Z
    from datetime import datetime, timezone

    s = s.rstrip("Z")
    if "." in s:
        head, frac = s.split(".", 1)
        s = f"{head}.{frac[:6]}"
        fmt = "%Y-%m-%dT%H:%M:%S.%f"
    else:
        fmt = "%Y-%m-%dT%H:%M:%S"
    return datetime.strptime(s, fmt).replace(tzinfo=timezone.utc).timestamp()


class FiredAlerts:
    """Alerts that fired, by their labels (as JSON), as :func:`evaluate` reads them."""

    def __init__(self, fired: Optional[Dict[str, Fired]] = None):
        self.fired: Dict[str, Fired] = fired if fired is not None else {}

    def first(self, alertname: str) -> Optional[Fired]:
        got = [f for f in list(self.fired.values()) if f.alertname == alertname]
        return min(got, key=lambda f: f.fired_at) if got else None

    def names(self) -> List[str]:
        return sorted({f.alertname for f in list(self.fired.values())})

    def view(self, keep: Callable[[Dict[str, str]], bool]) -> "FiredAlerts":
        """Those whose labels ``keep`` selects, as they are now (later ones are not added):
        a cluster scenario's own alerts (by app_id or pid), or those after a set already seen."""
        return FiredAlerts({k: f for k, f in list(self.fired.items()) if keep(f.labels)})


class AlertWatch(FiredAlerts):
    """Polls Prometheus' /api/v1/alerts every half second in a thread; records the
    first time each alert (name + labels) is seen firing."""

    def __init__(self, prom: Prometheus, interval: float = 0.5):
        super().__init__()
        self.prom = prom
        self.interval = interval
        self.errors = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def start(self) -> "AlertWatch":
        self._t.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                now = time.time()
                for a in self.prom.alerts():
                    if a.get("state") != "firing":
                        continue
                    lbl = a["labels"]
                    key = json.dumps(lbl, sort_keys=True)
                    if key not in self.fired:
                        f = Fired(lbl["alertname"], lbl.get("severity", ""), lbl, _parse_ts(a["activeAt"]), now,
                                  a.get("annotations", {}).get("summary", ""))
                        self.fired[key] = f
                        log(f"FIRING {f.alertname} {_short(lbl)}")
            except Exception:  # noqa: BLE001 - Prometheus busy: try again
                self.errors += 1
            self._stop.wait(self.interval)

    def wait(self, alertnames: List[str], timeout: float, stop: Optional[Callable[[], bool]] = None,
             keep: Optional[Callable[[Dict[str, str]], bool]] = None) -> bool:
        """Until every alert of ``alertnames`` fired (True), ``stop()`` or the timeout (False);
        only those whose labels ``keep`` selects count (a scenario's own, in one view)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            seen = self.view(keep) if keep is not None else self
            if all(seen.first(n) for n in alertnames):
                return True
            if stop is not None and stop():
                return False
            time.sleep(0.5)
        return False

    def stop(self) -> None:
        self._stop.set()
        self._t.join(5)


def _short(labels: Dict[str, str]) -> str:
    keep = ("target", "process", "app_name", "query", "kind", "heap", "space")
    return " ".join(f"{k}={labels[k]}" for k in keep if labels.get(k))


# --------------------------------------------------------------------------
# Results


@dataclass
class Expect:
    alertname: str
    #: "before": must fire before the failure; "after": must fire (the failure has happened);
    #: "any": must fire at some point
    when: str = "before"
    #: with "before": the lead must be at least this share of the time from the start of the
    #: trouble to the failure (the early warning of a leak: a quarter of its course)
    min_lead_share: Optional[float] = None
    #: with "before": the lead must be at least this many production hours (at the lab's time scale)
    min_lead_hours: Optional[float] = None


@dataclass
class AlertResult:
    alertname: str
    severity: str
    fired_at: Optional[float]
    detect_s: Optional[float]  # fired_at - scenario's trouble_start
    lead_s: Optional[float]  # failure_at - fired_at (positive: before the failure)
    expected: str  # before / after / any / "" (not expected, extra)
    ok: bool
    labels: Dict[str, str] = field(default_factory=dict)


@dataclass
class Result:
    scenario: str
    title: str
    trouble: str  # what the lab induced, and when it started
    failure: str  # what "the failure" is in this scenario
    lead_meaning: str
    started_at: float
    trouble_at: Optional[float] = None
    failure_at: Optional[float] = None
    ended_at: Optional[float] = None
    alerts: List[AlertResult] = field(default_factory=list)
    ok: bool = False
    problems: List[str] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)

    def to_json(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: Dict[str, Any]) -> "Result":
        d = dict(d)
        d["alerts"] = [AlertResult(**a) for a in d.get("alerts", [])]
        return cls(**d)


def evaluate(res: Result, watch: FiredAlerts, expects: List[Expect], forbid_all: bool = False) -> Result:
    """Fill ``res.alerts`` and ``res.ok`` from what fired."""
    res.ended_at = time.time()
    res.alerts = []
    expected_names = {e.alertname for e in expects}
    for e in expects:
        f = watch.first(e.alertname)
        ar = AlertResult(e.alertname, f.severity if f else "", f.fired_at if f else None,
                         _d(f.fired_at, res.trouble_at) if f else None,
                         _d(res.failure_at, f.fired_at) if f and res.failure_at else None, e.when, False,
                         f.labels if f else {})
        if f is None:
            res.problems.append(f"{e.alertname} did not fire")
        elif e.when == "before":
            if res.failure_at is None:
                res.problems.append(f"{e.alertname} fired but the failure was never observed")
            elif f.fired_at >= res.failure_at:
                res.problems.append(f"{e.alertname} fired {f.fired_at - res.failure_at:.0f}s after the failure, "
                                    "not before it")
            elif e.min_lead_share is not None and res.trouble_at is not None and \
                    res.failure_at - f.fired_at < e.min_lead_share * (res.failure_at - res.trouble_at):
                res.problems.append(f"{e.alertname} fired {res.failure_at - f.fired_at:.0f}s before the failure: "
                                    f"less than {e.min_lead_share:g} of the {res.failure_at - res.trouble_at:.0f}s "
                                    "from the start of the trouble to the failure")
            elif e.min_lead_hours is not None and res.failure_at - f.fired_at < e.min_lead_hours * 3600 * TIME_SCALE:
                res.problems.append(f"{e.alertname} fired {res.failure_at - f.fired_at:.0f}s before the failure: "
                                    f"less than {e.min_lead_hours:g} production hour(s), "
                                    f"{e.min_lead_hours * 3600 * TIME_SCALE:.0f}s at the lab's time scale")
            else:
                ar.ok = True
        else:
            ar.ok = True
        res.alerts.append(ar)
    for name in watch.names():
        if name in expected_names:
            continue
        f = watch.first(name)
        res.alerts.append(AlertResult(name, f.severity, f.fired_at, _d(f.fired_at, res.trouble_at),
                                      _d(res.failure_at, f.fired_at) if res.failure_at else None, "",
                                      not forbid_all, f.labels))
        if forbid_all:
            res.problems.append(f"{name} fired ({_short(f.labels)}): a false positive")
    res.ok = not res.problems
    return res


def _d(a: Optional[float], b: Optional[float]) -> Optional[float]:
    if a is None or b is None:
        return None
    return round(a - b, 1)


def _fmt_s(v: Optional[float]) -> str:
    if v is None:
        return "n/a"
    sign = "-" if v < 0 else ""
    v = abs(v)
    if v >= 60:
        return f"{sign}{int(v // 60)}m{int(round(v % 60)):02d}s"
    return f"{sign}{v:.0f}s"


def markdown_table(results: List[Result]) -> str:
    """The table of docs/lab.md: one row per alert of each scenario."""
    lines = ["| scenario | the failure (measured) | alert | severity | time to detect | lead time before the failure |",
             "|---|---|---|---|---|---|"]
    for r in results:
        first = True
        rows = [a for a in r.alerts if a.fired_at is not None or a.expected]
        if not rows:
            rows = [None]
        for a in rows:
            scen = f"**{r.scenario}** {r.title}" if first else ""
            fail = r.failure if first else ""
            if a is None:
                lines.append(f"| {scen} | {fail} | none fired{' (as required)' if r.ok else ''} | | | |")
            else:
                name = f"`{a.alertname}`" + ("" if a.expected else " (also)" if a.ok else " (false positive)")
                if a.fired_at is None:
                    lines.append(f"| {scen} | {fail} | {name} | | did not fire | |")
                else:
                    lead = _fmt_s(a.lead_s) if a.lead_s is not None else "n/a"
                    if a.lead_s is not None and a.lead_s < 0:
                        lead = f"{_fmt_s(-a.lead_s)} after"
                    lines.append(f"| {scen} | {fail} | {name} | {a.severity} | {_fmt_s(a.detect_s)} | {lead} |")
            first = False
    return "\n".join(lines)


def report(r: Result) -> str:
    out = [f"== {r.scenario}: {r.title} -- {'PASS' if r.ok else 'FAIL'}",
           f"   induced : {r.trouble}",
           f"   failure : {r.failure}" + (f" (observed at +{r.failure_at - r.started_at:.0f}s)" if r.failure_at
                                           else " (not observed)" if r.lead_meaning else ""),
           f"   lead    : {r.lead_meaning}"]
    for a in r.alerts:
        when = time.strftime("%H:%M:%S", time.localtime(a.fired_at)) if a.fired_at else "-"
        lead = ""
        if a.lead_s is not None:
            lead = f", lead time {_fmt_s(a.lead_s)}" if a.lead_s >= 0 else f", {_fmt_s(-a.lead_s)} after the failure"
        out.append(f"   alert   : {a.alertname} [{a.severity or '-'}] fired {when}"
                   f" (detect {_fmt_s(a.detect_s)}{lead}){'' if a.expected else ' (not required)'}")
    for n in r.notes:
        out.append(f"   note    : {n}")
    for p in r.problems:
        out.append(f"   PROBLEM : {p}")
    return "\n".join(out)


def workdir(name: str, base: Optional[Path] = None) -> Path:
    base = base or Path(tempfile.gettempdir())
    d = Path(tempfile.mkdtemp(prefix=f"sparkwatch-lab-{name}-", dir=str(base)))
    os.chmod(d, 0o755)
    return d
