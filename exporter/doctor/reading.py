"""Reading every configured target once, with the exporter's own collectors and
scrape engine, and what the jvm collector cannot see on this host.

A :class:`Reader` builds the configured targets once (the same collectors
``/metrics`` uses) and reads them all, concurrently and under the configured
scrape deadline, as many times as asked: ``--watch`` reads twice with the same
collectors, so that what they remember between scrapes (the time a finished
Livy session was first seen) carries over. Nothing is written to any target.

Besides the samples, a :class:`Reading` keeps each target's status (up, its
error, the reasons of its partial errors), and a :class:`HostScan` lists the
JVMs of this host with what decides whether the jvm collector sees them (a
performance-data file, readable by this process) and the flags that blind it.
"""

from __future__ import annotations

import os
import pwd
import re
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import psutil

from .. import procstats
from ..collector import Deadline
from ..collectors import build_collectors
from ..collectors.jvm import JvmTarget, flag, main_class, short_name
from ..collectors.zookeeper import ZooKeeperTarget
from ..config import iter_targets
from ..hotspot import perfdata
from ..hotspot.discovery import scan_host
from ..livystore import SESSION_KINDS, kind_path
from ..scrape import Scraper, Target

Sample = Tuple[str, Dict[str, str], float]

#: JVM options that leave a JVM without a performance-data file the jvm collector could read
NO_PERF_FLAGS = ("-XX:-UsePerfData", "-XX:+PerfDisableSharedMem")
NO_ATTACH_FLAG = "-XX:+DisableAttachMechanism"


@dataclass
class TargetStatus:
    """One target in one reading: up or down, and why."""

    kind: str
    name: str
    up: bool
    error: str  # the error that made it down; empty when up
    #: this reading's error reasons (REASONS) and how often: the one that made it
    #: down, or those that cost part of it (one JVM, one application) while it is up
    reasons: Dict[str, int]


@dataclass
class Reading:
    """Every sample of every target read once, when (monotonic and wall clock), and each target's status."""

    monotonic: float
    wall: float
    samples: List[Sample]
    targets: List[TargetStatus]

    def find(self, name: str, **labels: str) -> List[Sample]:
        return [s for s in self.samples if s[0] == name and all(s[1].get(k) == v for k, v in labels.items())]


def store_paths(tc: ZooKeeperTarget) -> List[str]:
    """The znodes of Livy's recovery store that a zookeeper target counts."""
    if not tc.livy_state_store.enabled:
        return []
    return [kind_path("/" + tc.livy_state_store.key_prefix, k) for k in SESSION_KINDS]


def _with_store_paths(kind: str, tc):
    """A zookeeper target that also reports whether the recovery store's znodes exist
    (zookeeper_znode_exists): the same exists() requests it makes to count them."""
    if kind != "zookeeper":
        return tc
    extra = [p for p in store_paths(tc) if p not in tc.paths]
    return tc.model_copy(update={"paths": list(tc.paths) + extra}) if extra else tc


class Reader:
    """The configured targets, built once with the exporter's collectors, read with its scrape engine."""

    def __init__(self, config):
        self.config = config
        configured = [(kind, _with_store_paths(kind, tc)) for kind, tc in iter_targets(config)]
        self.configured = configured
        self.targets: List[Target] = [Target(c) for c in build_collectors(configured)]
        ex = config.exporter
        self.scraper = Scraper(self.targets, ex.scrape_timeout, ex.timeout_offset)

    def read(self) -> Reading:
        start, wall = time.monotonic(), time.time()
        before = [dict(t.state.errors) for t in self.targets]
        families = self.scraper.scrape(self.scraper.max_timeout)
        samples: List[Sample] = []
        for fam in families:
            for s in fam.samples:
                samples.append((s.name, dict(s.labels), float(s.value)))
        statuses = []
        for t, old in zip(self.targets, before):
            st = t.state
            # this reading's errors: the target's counters accumulate across readings
            new = {r: n - old.get(r, 0) for r, n in st.errors.items() if n > old.get(r, 0)}
            statuses.append(TargetStatus(t.kind, t.name, bool(st.up), "" if st.up else st.last_error, new))
        return Reading(start, wall, samples, statuses)

    def close(self) -> None:
        for t in self.targets:
            try:
                t.collector.close()
            except Exception:
                pass


# --------------------------------------------------------------------------
# The JVMs of this host


@dataclass
class HostJvm:
    """A java process of this host, as the jvm collector would see it (or not)."""

    pid: int
    uid: int
    user: str
    args: List[str]
    perf_path: Optional[str]  # the performance-data file found for it, if any
    perf_readable: bool
    main: str = ""  # main class (or jar), from the file or the command line
    #: seconds since the process started (None if unknown)
    age: Optional[float] = None
    #: why the file cannot be read: "" (it can, or there is none), "permission", or what is wrong in it
    #: (a JVM that is initialising has not written it yet)
    perf_error: str = ""
    #: jvm target name -> (process, app_id, executor_id), for the targets that watch it
    labels: Dict[str, Tuple[str, str, str]] = field(default_factory=dict)

    @property
    def cmdline(self) -> str:
        return " ".join(self.args)

    def has(self, flag: str) -> bool:
        return flag in self.args


@dataclass
class HostScan:
    """Every JVM of this host, and the uid this process reads them as."""

    jvms: List[HostJvm]
    euid: int

    def pids_of(self, target: str, process: str, app_id: str, executor_id: str) -> List[int]:
        return sorted(j.pid for j in self.jvms if j.labels.get(target) == (process, app_id, executor_id))


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def _main_from_args(args: List[str]) -> str:
    """The main class (or -jar file) of a java command line."""
    it = iter(args[1:])
    for a in it:
        if a in ("-cp", "-classpath", "--class-path", "--module-path", "-p", "--add-modules",
                 "--add-opens", "--add-exports"):
            next(it, None)
        elif a == "-jar":
            return next(it, "")
        elif a in ("-m", "--module"):
            return next(it, "")
        elif not a.startswith("-"):
            return a
    return ""


def _age(pid: int) -> Optional[float]:
    try:
        return max(0.0, time.time() - psutil.Process(pid).create_time())
    except psutil.Error:
        return None


def scan_jvms(jvm_targets: List[JvmTarget], deadline: Optional[Deadline] = None) -> HostScan:
    """Every java process of this host (its ``comm`` is ``java``, or its command starts
    with a ``java`` binary), with the performance-data file the jvm collector would read
    and the jvm targets that would watch it, labelled as that collector labels it.

    ``deadline`` bounds it as a scrape of the jvm collector is bounded: any local user
    can leave hundreds of files that are never ready for processes named ``java``; once
    it has passed, a file is not read (its JVM says so) instead of being retried."""
    snap, refs = scan_host(deadline)
    by_pid = {r.pid: r for r in refs}
    matchers = [(t, re.compile(t.match)) for t in jvm_targets if t.match is not None]
    discover = [t for t in jvm_targets if t.discover]
    jvms: List[HostJvm] = []
    for pid, pi in sorted(snap.procs.items()):
        if pid == os.getpid():
            continue
        args = procstats.cmdline(pid)
        comm = _comm(pid)
        if not (comm == "java" or (args and os.path.basename(args[0]) == "java") or pid in by_pid):
            continue
        args = args or []
        ref = by_pid.get(pid)
        path = ref.path if ref is not None else None
        readable = path is not None and os.access(path, os.R_OK)
        error = "permission" if path is not None and not readable else ""
        main = ""
        if path is not None and readable and deadline is not None and deadline.expired():
            readable, error = False, "not read: the doctor's time for the host's JVMs ran out"
        elif path is not None and readable:
            try:
                pd = perfdata.read_file(path, deadline_remaining=deadline.remaining if deadline else None,
                                        file_id=ref.file_id if ref.file_id != (0, 0) else None)
                main = main_class(pd.str("sun.rt.javaCommand") or "")
            except (perfdata.PerfDataError, OSError) as e:
                readable, error = False, str(e) or type(e).__name__
        if not main:
            main = _main_from_args(args)
        j = HostJvm(pid, pi.ruid, _user(pi.ruid), args, path, readable, main, _age(pid), error)
        cmd = j.cmdline
        ids = (flag(args, "--app-id"), flag(args, "--executor-id"))
        claimed = False
        for t, rx in matchers:
            if rx.search(cmd):
                j.labels[t.display_name()] = (t.display_name(),) + ids
                claimed = True
        if not claimed:
            for t in discover:
                j.labels[t.display_name()] = (short_name(main),) + ids
        jvms.append(j)
    return HostScan(jvms, os.geteuid())
