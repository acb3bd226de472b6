"""JVM collector: the HotSpot JVMs of this host, their threads against their limits.

One config entry is one target: either ``match`` (a regular expression on
the command line; every matching JVM, 0..n, gets ``process=<name>``) or
``discover: true`` (every local JVM that no ``match`` entry claims, labelled
by its main class). Per JVM it reads:

- the perf-data file (``/tmp/hsperfdata_<user>/<pid>``, for JVMs in other
  mount namespaces through ``/proc/<pid>/root``): classes, threads, GC,
  memory spaces, JIT code size. No attach, no JDK, no agent. Which files are
  JVMs' (any user may leave one), in what order and within what share of the
  deadline they are read: :mod:`sparkwatch.hotspot.discovery`.
- with ``attach: true``, ``Compiler.codecache`` through the attach socket:
  code heaps, full count, whether the JIT is still compiling. Attaching
  starts the "Attach Listener" thread in the JVM (once; it stays).
- the process: threads, fds, RSS, TCP connections, RLIMIT_NPROC, the user's
  threads, cgroup pids, host threads (see :mod:`sparkwatch.procstats`).

Labels: ``process``, ``app_id`` and ``executor_id`` (Spark executors carry
``--app-id`` / ``--executor-id``; empty otherwise), and ``pid``, which is
empty unless two JVMs of the same target would otherwise have the same
labels (then each of them gets its pid). The pid is not a label by default
because it changes at every restart and would start new series each time.
"""

from __future__ import annotations

import logging
import os
import re
import time
from typing import Dict, List, Optional, Tuple

from pydantic import field_validator, model_validator

from .. import procstats, tcptables
from ..collector import Collector, Deadline, MetricSet, ScrapeContext, TargetError, counter, gauge, info
from ..targetconfig import Interval, Seconds, TargetBase
from ..hotspot import attach as hs_attach
from ..hotspot import perfdata
from ..hotspot.discovery import SKIP_REASONS, JvmRef, PerfFiles, Skipped, scan_host
from ..logsafe import RateLimitedLog

log = logging.getLogger("sparkwatch.jvm")

#: labels of every series of a JVM
JVM_LABELS = ("process", "app_id", "executor_id", "pid")

# --- from the perf-data file
JVM_INFO = info("jvm", "The JVM: main class, Java version (java.version), VM version and user.",
                JVM_LABELS + ("main_class", "version", "vm_version", "user"))
START_TIME = gauge("jvm_start_time_seconds", "When the JVM started (sun.rt.createVmBeginTime), Unix time.", JVM_LABELS)
CLASSES_LOADED = gauge("jvm_classes_currently_loaded",
                       "Classes currently loaded: loaded minus unloaded, shared (CDS) classes included "
                       "(what ClassLoadingMXBean.getLoadedClassCount returns).", JVM_LABELS)
CLASSES_LOADED_TOTAL = counter("jvm_classes_loaded_total",
                               "Classes loaded since the JVM started, shared (CDS) classes included "
                               "(java.cls.loadedClasses + java.cls.sharedLoadedClasses).", JVM_LABELS)
CLASSES_UNLOADED_TOTAL = counter("jvm_classes_unloaded_total",
                                 "Classes unloaded since the JVM started "
                                 "(java.cls.unloadedClasses + java.cls.sharedUnloadedClasses).", JVM_LABELS)
THREADS_LIVE = gauge("jvm_threads_live", "Live Java threads (java.threads.live).", JVM_LABELS)
THREADS_DAEMON = gauge("jvm_threads_daemon", "Live Java daemon threads (java.threads.daemon).", JVM_LABELS)
THREADS_PEAK = gauge("jvm_threads_peak", "Peak number of live Java threads (java.threads.livePeak).", JVM_LABELS)
THREADS_STARTED = counter("jvm_threads_started_total", "Java threads started since the JVM started "
                          "(java.threads.started).", JVM_LABELS)
COMPILED_CODE = gauge("jvm_compiled_code_bytes",
                      "Machine code the JIT has produced since the JVM started, in bytes (sun.ci.nmethodCodeSize; "
                      "it only grows, freed code included). For what is in the code cache now see "
                      "jvm_codecache_used_bytes.", JVM_LABELS)
GC_COUNT = counter("jvm_gc_collections_total", "Collections (or pauses) by collector "
                   "(sun.gc.collector.N.invocations).", JVM_LABELS + ("collector",))
GC_TIME = counter("jvm_gc_seconds_total", "Time spent by collector, in seconds (sun.gc.collector.N.time / "
                  "sun.os.hrt.frequency).", JVM_LABELS + ("collector",))
SPACE_USED = gauge("jvm_memory_space_used_bytes", "Used bytes by memory space (eden, s0, s1, old, metaspace, "
                   "compressedclassspace).", JVM_LABELS + ("space",))
SPACE_COMMITTED = gauge("jvm_memory_space_committed_bytes", "Committed (capacity) bytes by memory space.",
                        JVM_LABELS + ("space",))
SPACE_MAX = gauge("jvm_memory_space_max_bytes", "Maximum bytes by memory space; absent when unlimited.",
                  JVM_LABELS + ("space",))
# --- through the attach mechanism (attach: true)
CC_USED = gauge("jvm_codecache_used_bytes", "Code cache bytes in use, by code heap (Compiler.codecache; "
                "heap 'CodeCache' when the code cache is not segmented). Needs attach: true.", JVM_LABELS + ("heap",))
CC_MAX = gauge("jvm_codecache_max_bytes", "Code cache size (ReservedCodeCacheSize, or the code heap's size). "
               "Needs attach: true.", JVM_LABELS + ("heap",))
CC_MAX_USED = gauge("jvm_codecache_max_used_bytes", "Most code cache bytes ever in use, by code heap. "
                    "Needs attach: true.", JVM_LABELS + ("heap",))
CC_FREE = gauge("jvm_codecache_free_bytes", "Free code cache bytes, by code heap. Needs attach: true.",
                JVM_LABELS + ("heap",))
CC_FULL = counter("jvm_codecache_full_events_total", "Times the code cache was found full (full_count). "
                  "Needs attach: true.", JVM_LABELS)
JIT_ENABLED = gauge("jvm_jit_compilation_enabled", "1 while the JIT compiles, 0 once compilation has been "
                    "disabled (code cache full). Needs attach: true.", JVM_LABELS)
# --- the process and the host
P_THREADS = gauge("jvm_process_threads", "OS threads of the JVM process.", JVM_LABELS)
P_THREAD_LIMIT = gauge("jvm_process_thread_limit",
                       "The smallest thread limit that applies to the process: RLIMIT_NPROC (soft; not for root "
                       "or CAP_SYS_RESOURCE/CAP_SYS_ADMIN), the tightest cgroup pids.max, kernel threads-max. "
                       "Absent when none applies.", JVM_LABELS)
P_THREAD_HEADROOM = gauge("jvm_process_thread_headroom",
                          "Threads the process can still start before it hits one of its limits: the least of "
                          "RLIMIT_NPROC - user threads, pids.max - pids.current, threads-max - host threads.", JVM_LABELS)
P_NPROC = gauge("jvm_process_nproc_limit", "RLIMIT_NPROC (soft) of the process; absent when unlimited. "
                "The kernel compares it with jvm_process_user_threads.", JVM_LABELS)
P_USER_THREADS = gauge("jvm_process_user_threads", "Threads of all processes of the process' real user "
                       "(what RLIMIT_NPROC counts).", JVM_LABELS)
P_FDS = gauge("jvm_process_open_fds", "Open file descriptors of the process.", JVM_LABELS)
P_MAX_FDS = gauge("jvm_process_max_fds", "RLIMIT_NOFILE (soft) of the process; absent when unlimited.", JVM_LABELS)
P_RSS = gauge("jvm_process_resident_memory_bytes", "Resident memory of the process, in bytes.", JVM_LABELS)
P_TCP = gauge("jvm_process_tcp_connections", "TCP sockets of the process by state (lowercase, e.g. "
              "established, close_wait, listen).", JVM_LABELS + ("state",))
P_CG_PIDS = gauge("jvm_process_cgroup_pids", "pids.current of the process' cgroup (of the ancestor with the "
                  "least headroom when one has pids.max).", JVM_LABELS)
P_CG_PIDS_MAX = gauge("jvm_process_cgroup_pids_max", "pids.max of the process' tightest limited cgroup; "
                      "absent when unlimited.", JVM_LABELS)
H_THREADS = gauge("jvm_host_threads", "Threads on the host (what kernel.threads-max counts). The same on "
                  "every jvm target.")
H_THREADS_MAX = gauge("jvm_host_threads_max", "kernel.threads-max.")
PROCESSES = gauge("jvm_processes", "JVMs this target watches now (0 when a match entry matches nothing).")
FILES_SKIPPED = counter("jvm_perfdata_files_skipped_total",
                        "Perf-data files of live processes this target would have read and did not, by reason: "
                        "not_hotspot (not a file HotSpot writes, or one that cannot be opened), not_mapped (a "
                        "valid file its process has not mapped: a copy), not_ready (still being initialised after three reads), unread (the "
                        "scrape's time for reading files ran out). Counted at every scrape.", ("reason",))

#: values at or above this are "unlimited" (HotSpot reports e.g. MaxMetaspaceSize as max_uintx)
UNLIMITED = 1 << 60
#: a JVM's process statistics are not started with less than this left in the deadline
MARGIN = 0.2
#: seconds between two summaries of skipped files (per target)
SUMMARY_INTERVAL = 60.0


class JvmTarget(TargetBase):
    """``match`` xor ``discover: true``; ``name`` is the ``process`` label of a match entry."""

    #: regular expression searched in the JVM's command line (arguments joined by spaces)
    match: Optional[str] = None
    #: every local JVM that no match entry claims
    discover: Optional[bool] = None
    #: run Compiler.codecache through the attach mechanism (starts a thread in the JVM)
    attach: bool = False
    #: seconds an attach result is reused before the JVM is asked again (0 = every scrape)
    attach_interval: Interval = 60.0
    #: seconds one attach may take at most (the scrape deadline also applies)
    attach_timeout: Seconds = 5.0
    #: count TCP connections by state (reads /proc/<pid>/net/tcp*, costly with many sockets)
    tcp_connections: bool = True

    @field_validator("match")
    @classmethod
    def _regex(cls, v: Optional[str]) -> Optional[str]:
        if v is None:
            return v
        try:
            re.compile(v)
        except re.error as e:
            raise ValueError(f"invalid regular expression {v!r}: {e}") from None
        return v

    @model_validator(mode="after")
    def _one_kind(self):
        if (self.match is None) == (not self.discover):
            raise ValueError("give exactly one of match (a regular expression) or discover: true")
        if self.match is not None and not self.name:
            raise ValueError("a match entry needs a name (it is the process label)")
        return self

    def display_name(self) -> str:
        return self.name or "discover"


# --------------------------------------------------------------------------
# What a JVM is called


def main_class(java_command: str) -> str:
    """The full main class (or jar) from sun.rt.javaCommand."""
    first = (java_command or "").split(" ", 1)[0]
    return first


def short_name(main: str) -> str:
    """LivyServer from org.apache.livy.server.LivyServer, app from /opt/app.jar, Cls from mod/pkg.Cls."""
    if not main:
        return "unknown"
    if main.endswith(".jar"):
        return os.path.basename(main)[:-4] or "unknown"
    main = main.rsplit("/", 1)[-1]
    return main.rsplit(".", 1)[-1] or "unknown"


def flag(args: List[str], option: str) -> str:
    """The value of ``option`` in a command line (``--app-id X`` or ``--app-id=X``; the
    first one), or ``""``: how a Spark executor's app and executor ids are read."""
    for i, a in enumerate(args):
        if a == option and i + 1 < len(args):
            return args[i + 1]
        if a.startswith(option + "="):
            return a[len(option) + 1:]
    return ""


# --------------------------------------------------------------------------


class JvmCollector(Collector):
    """One ``jvm:`` entry: the JVMs of this host it watches (see the module's docstring).

    The host is scanned once per scrape for all jvm targets
    (``scrape.shared``); each target reads the perf-data files of the processes
    it wants through its :class:`~sparkwatch.hotspot.discovery.PerfFiles`, which
    decides which file is a JVM's. A discover entry leaves alone the JVMs a
    match entry claims (``bind``). One JVM that fails costs that JVM (a partial
    error), never the target; state kept across scrapes (attach results, log
    lines, verdicts on files) is dropped when its process is gone.
    """

    kind = "jvm"
    config_model = JvmTarget
    metrics = (JVM_INFO, START_TIME, CLASSES_LOADED, CLASSES_LOADED_TOTAL, CLASSES_UNLOADED_TOTAL, THREADS_LIVE,
               THREADS_DAEMON, THREADS_PEAK, THREADS_STARTED, COMPILED_CODE, GC_COUNT, GC_TIME, SPACE_USED,
               SPACE_COMMITTED, SPACE_MAX, CC_USED, CC_MAX, CC_MAX_USED, CC_FREE, CC_FULL, JIT_ENABLED, P_THREADS,
               P_THREAD_LIMIT, P_THREAD_HEADROOM, P_NPROC, P_USER_THREADS, P_FDS, P_MAX_FDS, P_RSS, P_TCP, P_CG_PIDS,
               P_CG_PIDS_MAX, H_THREADS, H_THREADS_MAX, PROCESSES, FILES_SKIPPED)
    probe_field = None

    def __init__(self, config: JvmTarget):
        super().__init__(config)
        self._re = re.compile(config.match) if config.match is not None else None
        #: the match entries of the same configuration (a discover entry leaves their JVMs alone)
        self._claimers: List["JvmCollector"] = []
        #: (pid, start time) -> (monotonic time, CodeCache | AttachError)
        self._attach_cache: Dict[Tuple[int, int], Tuple[float, object]] = {}
        self._logged: Dict[int, str] = {}
        #: JVMs (pid, start time) that got SIGQUIT without starting a listener
        self._no_signal: set = set()
        #: the perf-data files this target reads, and which of them are JVMs'
        self._files = PerfFiles()
        self._skipped_total: Dict[str, int] = {r: 0 for r in SKIP_REASONS}
        self._summary = RateLimitedLog(log, interval=SUMMARY_INTERVAL)

    def bind(self, peers) -> None:
        self._claimers = [c for c in peers if isinstance(c, JvmCollector) and c is not self and c._re is not None]

    def claims(self, cmdline: str) -> bool:
        return self._re is not None and self._re.search(cmdline) is not None

    def _warn(self, pid: int, msg: str) -> None:
        if self._logged.get(pid) != msg:
            self._logged[pid] = msg
            log.warning("jvm target %s: JVM %d: %s", self.name, pid, msg)

    # ------------------------------------------------------------------

    def _wants(self, cmd: str) -> bool:
        if self._re is not None:
            return self._re.search(cmd) is not None
        return not any(c.claims(cmd) for c in self._claimers)

    def collect(self, out: MetricSet, scrape: ScrapeContext) -> None:
        deadline = scrape.deadline
        def scan():  # one /proc pass per scrape, shared by all jvm targets
            unread: List[str] = []  # files whose process could not be told in time
            return (*scan_host(deadline, unread), unread)

        snap, refs, unread = scrape.shared("jvm.scan_host", scan)
        deadline.timeout()
        cands = []
        for ref in refs:
            args = procstats.cmdline(ref.pid)
            if args is not None and not self._wants(" ".join(args)):
                continue  # not ours: its file is not even read
            cands.append((ref, args))
        reading = self._files.read(cands, deadline)
        skipped = reading.skipped
        for path in unread:
            skipped.add("unread", path)
        for pid, message in reading.unreadable:  # a JVM whose own file cannot be read
            self._warn(pid, message)
            out.error("partial")
        # labels, and pids only where they are needed to tell JVMs apart
        labelled = []
        for ref, pd, args in reading.jvms:
            if not self._wants(" ".join(args)):
                continue  # its command line was unreadable, and what the JVM recorded is not ours
            main = main_class(pd.str("sun.rt.javaCommand") or "")
            process = self.config.name if self._re is not None else short_name(main)
            base = (process, flag(args, "--app-id"), flag(args, "--executor-id"))
            labelled.append((base, ref, pd, main))
        counts: Dict[tuple, int] = {}
        for base, *_ in labelled:
            counts[base] = counts.get(base, 0) + 1
        live = set()
        late = set()
        tcp_cache = tcptables.TcpTables(deadline)  # each network namespace read once, for all the JVMs in it
        if self.config.tcp_connections:
            tcp_cache.expect(ref.pid for _, ref, _, _ in labelled)
        for base, ref, pd, main in labelled:
            if deadline.remaining() < MARGIN:
                late.add(ref.pid)  # reported next time: known JVMs are read first
                continue
            labels = dict(zip(JVM_LABELS, base + (str(ref.pid) if counts[base] > 1 else "",)))
            try:
                self._one(out, deadline, ref, pd, main, labels, snap, tcp_cache)
            except procstats.ProcessGone:
                continue  # exited during the scrape: its series go away
            except TargetError:
                raise  # the scrape deadline
            except Exception:  # a bug must cost one JVM, not the target
                log.exception("jvm target %s: JVM %d", self.name, ref.pid)
                out.error("internal")
                continue
            live.add(ref.pid)
        if late or skipped.count["unread"]:
            out.error("partial")  # JVMs may be among what was left
        out.add(PROCESSES, len(live))
        out.add(H_THREADS, procstats.host_threads() or snap.total_threads)
        out.add(H_THREADS_MAX, procstats.threads_max())
        for reason in SKIP_REASONS:
            self._skipped_total[reason] += skipped.count[reason]
            out.add(FILES_SKIPPED, self._skipped_total[reason], reason=reason)
        self._summarise(skipped, len(late))
        kept = live | late
        for key in [k for k in self._attach_cache if k[0] not in kept]:
            del self._attach_cache[key]
        self._no_signal = {k for k in self._no_signal if k[0] in kept}
        alive = {r.pid for r in refs}
        for pid in [p for p in self._logged if p not in alive]:
            del self._logged[pid]
        self._files.forget(refs)

    def _summarise(self, skipped: Skipped, late: int) -> None:
        """One line for the skipped files of a scrape (at most one per SUMMARY_INTERVAL
        per target): how many, why, and one of each."""
        total = sum(skipped.count.values())
        if not total and not late:
            return
        parts = skipped.describe()
        if late:
            parts.append(f"{late} JVMs found but not reported: the scrape deadline was near")
        quiet = not late and total == skipped.count["not_ready"]  # JVMs starting: no cause for alarm
        self._summary.log(logging.INFO if quiet else logging.WARNING,
                          "jvm target %s: skipped %d perf-data files of live processes: %s",
                          self.name, total, "; ".join(parts), key=quiet)

    def _one(self, out: MetricSet, deadline: Deadline, ref: JvmRef, pd: perfdata.PerfData, main: str,
             labels: Dict[str, str], snap: procstats.HostSnapshot, tcp_cache: tcptables.TcpTables) -> None:
        # process stats first: a JVM that has exited raises ProcessGone before anything is added
        ps = procstats.process_stats(ref.pid, snap, tcp=self.config.tcp_connections, tcp_cache=tcp_cache)
        if ps.tcp_unread:  # its jvm_process_tcp_connections left out
            self._warn(ref.pid, f"TCP sockets not counted: {ps.tcp_unread}")
            out.error("partial")
        user = ""
        if ps.ruid is not None:
            try:
                import pwd

                user = pwd.getpwuid(ps.ruid).pw_name
            except KeyError:
                user = str(ps.ruid)
        out.add(JVM_INFO, 1, main_class=main, version=pd.str("java.property.java.version") or "",
                vm_version=pd.str("java.property.java.vm.version") or "", user=user, **labels)
        begin = pd.int("sun.rt.createVmBeginTime")
        out.add(START_TIME, begin / 1000.0 if begin else None, **labels)
        self._perf_metrics(out, pd, labels)
        self._process_metrics(out, ps, labels)
        if self.config.attach:
            self._attach_metrics(out, deadline, ref, pd, labels)

    @staticmethod
    def _perf_metrics(out: MetricSet, pd: perfdata.PerfData, labels: Dict[str, str]) -> None:
        i = pd.int
        loaded = _sum(i("java.cls.loadedClasses"), i("java.cls.sharedLoadedClasses"))
        unloaded = _sum(i("java.cls.unloadedClasses"), i("java.cls.sharedUnloadedClasses"))
        out.add(CLASSES_LOADED_TOTAL, loaded, **labels)
        out.add(CLASSES_UNLOADED_TOTAL, unloaded, **labels)
        if loaded is not None and unloaded is not None:
            out.add(CLASSES_LOADED, loaded - unloaded, **labels)
        out.add(THREADS_LIVE, i("java.threads.live"), **labels)
        out.add(THREADS_DAEMON, i("java.threads.daemon"), **labels)
        out.add(THREADS_PEAK, i("java.threads.livePeak"), **labels)
        out.add(THREADS_STARTED, i("java.threads.started"), **labels)
        out.add(COMPILED_CODE, i("sun.ci.nmethodCodeSize"), **labels)
        n = 0
        while True:
            name = pd.str(f"sun.gc.collector.{n}.name")
            if name is None:
                break
            out.add(GC_COUNT, i(f"sun.gc.collector.{n}.invocations"), collector=name, **labels)
            out.add(GC_TIME, pd.seconds(f"sun.gc.collector.{n}.time"), collector=name, **labels)
            n += 1
        spaces: Dict[str, Tuple[Optional[int], Optional[int], Optional[int]]] = {}
        g = 0
        while pd.get(f"sun.gc.generation.{g}.spaces") is not None or pd.get(f"sun.gc.generation.{g}.name"):
            gname = pd.str(f"sun.gc.generation.{g}.name") or f"generation{g}"
            s = 0
            while True:
                p = f"sun.gc.generation.{g}.space.{s}."
                sname = pd.str(p + "name")
                if sname is None:
                    break
                if sname == "space":  # G1's old generation has a single space called "space"
                    sname = gname
                if sname in spaces:
                    sname = f"{gname}-{sname}"
                spaces[sname] = (i(p + "used"), i(p + "capacity"), i(p + "maxCapacity"))
                s += 1
            g += 1
            if g > 16:
                break
        for sname, prefix in (("metaspace", "sun.gc.metaspace."), ("compressedclassspace",
                                                                  "sun.gc.compressedclassspace.")):
            if i(prefix + "used") is not None:
                spaces[sname] = (i(prefix + "used"), i(prefix + "capacity"), i(prefix + "maxCapacity"))
        for sname, (used, cap, mx) in spaces.items():
            out.add(SPACE_USED, used, space=sname, **labels)
            out.add(SPACE_COMMITTED, cap, space=sname, **labels)
            if mx is not None and 0 < mx < UNLIMITED:
                out.add(SPACE_MAX, mx, space=sname, **labels)

    @staticmethod
    def _process_metrics(out: MetricSet, ps: procstats.ProcessStats, labels: Dict[str, str]) -> None:
        out.add(P_THREADS, ps.threads, **labels)
        out.add(P_THREAD_LIMIT, ps.thread_limit, **labels)
        out.add(P_THREAD_HEADROOM, ps.thread_headroom, **labels)
        out.add(P_NPROC, ps.nproc_limit, **labels)
        out.add(P_USER_THREADS, ps.user_threads, **labels)
        out.add(P_FDS, ps.open_fds, **labels)
        out.add(P_MAX_FDS, ps.max_fds, **labels)
        out.add(P_RSS, ps.rss_bytes, **labels)
        for state, n in ps.tcp.items():
            out.add(P_TCP, n, state=state, **labels)
        out.add(P_CG_PIDS, ps.cgroup_pids, **labels)
        out.add(P_CG_PIDS_MAX, ps.cgroup_pids_max, **labels)

    def _attach_metrics(self, out: MetricSet, deadline: Deadline, ref: JvmRef, pd: perfdata.PerfData,
                        labels: Dict[str, str]) -> None:
        key = (ref.pid, pd.int("sun.rt.createVmBeginTime") or 0)
        now = time.monotonic()
        cached = self._attach_cache.get(key)
        if cached is not None and now - cached[0] < self.config.attach_interval:
            result = cached[1]
        else:
            left = deadline.remaining() - 0.05
            if left <= 0.05:
                self._warn(ref.pid, "no time left in the scrape deadline to attach")
                out.error("partial")
                return
            vm_args = pd.str("java.rt.vmArgs") or ""
            try:
                if "-XX:+DisableAttachMechanism" in vm_args.split():
                    raise hs_attach.AttachError("connection", "the JVM runs with -XX:+DisableAttachMechanism")
                text = hs_attach.jcmd(ref.pid, "Compiler.codecache", min(left, self.config.attach_timeout),
                                      nspid=ref.nspid, may_signal=key not in self._no_signal)
                result = hs_attach.parse_codecache(text)
            except hs_attach.AttachError as e:
                if e.signalled_in_vain:
                    self._no_signal.add(key)
                result = e
            except ValueError as e:
                result = hs_attach.AttachError("invalid_response", str(e))
            self._attach_cache[key] = (time.monotonic(), result)
        if isinstance(result, hs_attach.AttachError):
            if not os.path.exists(f"/proc/{ref.pid}"):
                return
            self._warn(ref.pid, f"attach: {result.message}")
            out.error("partial")
            return
        cc: hs_attach.CodeCache = result  # type: ignore[assignment]
        for heap, v in cc.heaps.items():
            out.add(CC_USED, v["used"], heap=heap, **labels)
            out.add(CC_MAX, v["size"], heap=heap, **labels)
            out.add(CC_MAX_USED, v["max_used"], heap=heap, **labels)
            out.add(CC_FREE, v["free"], heap=heap, **labels)
        out.add(CC_FULL, cc.full_count, **labels)
        out.add(JIT_ENABLED, cc.compilation_enabled, **labels)


def _sum(*vals: Optional[int]) -> Optional[int]:
    known = [v for v in vals if v is not None]
    return sum(known) if known else None
