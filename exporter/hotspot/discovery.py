"""The HotSpot JVMs of this host: finding them, and reading the perf-data files that are theirs.

A HotSpot JVM keeps its counters in ``/tmp/hsperfdata_<user>/<pid>`` (for a
JVM in another mount namespace, that namespace's ``/tmp``, reached through
``/proc/<pid>/root``). :func:`scan_host` lists every such file that a live
process could own (:func:`find_jvms`); :class:`PerfFiles` reads them for one
jvm target, scrape after scrape.

Any local user can leave any file named after any of their processes in a
directory of their own, so a file is a JVM's only when its process maps it (as
a JVM maps its own from its start to its end), and nothing such files do may
hide the real JVMs or outlast the scrape: files are read in an order garbage
cannot starve (:meth:`PerfFiles.order`), within a share of the deadline
(:data:`FILES_SHARE`), each skipped file counted by reason
(:data:`SKIP_REASONS`, the values of ``jvm_perfdata_files_skipped_total``);
see docs/jvm.md#files-that-are-not-a-jvms.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

import psutil

from .. import procstats
from . import perfdata

#: why a perf-data file of a live process was not read as a JVM's (see docs/jvm.md#files-that-are-not-a-jvms)
SKIP_REASONS = ("not_hotspot", "not_mapped", "not_ready", "unread")
#: reads of a file that is not ready yet (a JVM initialising it), RETRY_DELAY apart, one sleep per round for all
READ_ATTEMPTS = 3
RETRY_DELAY = 0.01
#: the share of the time left in the deadline that reading perf-data files may take; the rest is for the JVMs
FILES_SHARE = 0.5

_SKIP_TEXT = {
    "not_hotspot": "not HotSpot's",
    "not_mapped": "not mapped by their process (copies)",
    "not_ready": "not ready after three reads",
    "unread": "left unread (no time left)",
}


# --------------------------------------------------------------------------
# Finding the JVMs


@dataclass
class JvmRef:
    """A perf-data file and the live process it may belong to, as :func:`find_jvms`
    found it. Not yet read, so not yet known to be a JVM's: whoever owns the
    process may have put anything there. ``(pid, file_id)`` identifies it across
    scrapes (a new file under the same name is another one)."""

    pid: int  # in our pid namespace
    nspid: int  # in the JVM's own pid namespace (the perf file's name)
    path: str  # the perf-data file, as we can open it
    owner: int = 0  # the file's owner (uid)
    file_id: Tuple[int, int] = (0, 0)  # the file's (st_dev, st_ino)


def find_jvms(snap: procstats.HostSnapshot, out_of_time: Optional[Callable[[], bool]] = None,
              unread: Optional[List[str]] = None) -> List[JvmRef]:
    """Every live process with a perf-data file, in our mount namespace or another one.

    Processes are grouped by mount namespace; each namespace's
    ``/tmp/hsperfdata_*/`` is listed once (through ``/proc/<member>/root`` for
    other namespaces). A file belongs to the process of that namespace whose
    innermost pid is the file's name and whose user (or root) owns the file; a
    file without such a process is stale (its JVM was killed) and ignored.
    Directories and files are taken as they are, never through a symbolic link
    (HotSpot makes neither one). Whether the process is a JVM, and the file
    its own, is for :class:`PerfFiles` to find out (any user can leave any file
    named after any of their processes).

    Two processes of one namespace may have the file's pid, each in a pid namespace
    of its own: the one that maps the file is its process, their mappings read as
    :class:`PerfFiles` reads them (``out_of_time`` asked every
    :data:`MAPS_LINES_PER_LOOK` lines). Once it says the time is up, such files are
    left out, their paths added to ``unread``.
    """
    late = False
    groups: Dict[str, List[procstats.ProcInfo]] = {}
    for pi in snap.procs.values():
        key = "" if (not pi.mntns or not snap.self_mntns or pi.mntns == snap.self_mntns) else pi.mntns
        groups.setdefault(key, []).append(pi)
    out: List[JvmRef] = []
    for key, procs in groups.items():
        root = ""
        files: List[Tuple[str, str, os.stat_result]] = []
        if key:
            for pi in procs:  # any member shows the namespace's /tmp
                root = f"/proc/{pi.pid}/root"
                files = _perf_files(root)
                if files is not None:
                    break
        else:
            files = _perf_files("/")
        if not files:
            continue
        by_nspid: Dict[int, List[procstats.ProcInfo]] = {}
        for pi in procs:
            by_nspid.setdefault(pi.nspid[-1], []).append(pi)
        for dirname, name, st in files:
            n = int(name)
            cands = by_nspid.get(n)
            if not cands:
                continue
            owner = st.st_uid
            # root: a JVM started as root that then switched users (jsvc) keeps a root-owned file
            cands = [c for c in cands if owner in (c.euid, c.ruid, 0)]
            rel = f"tmp/{dirname}/{n}"
            if len(cands) > 1:  # e.g. a JVM that is pid 1 of a pid namespace sharing our /tmp
                mapping = []
                for c in cands:
                    mapped = OUT_OF_TIME if late else _maps_file(c.pid, dirname, n, out_of_time)
                    if mapped is OUT_OF_TIME:
                        late = True
                        if unread is not None:
                            unread.append(f"{root}/{rel}" if key else f"/{rel}")
                        break
                    if mapped:
                        mapping.append(c)
                cands = [] if late else mapping
            if len(cands) != 1:
                continue
            jp = cands[0]
            out.append(JvmRef(jp.pid, n, f"/proc/{jp.pid}/root/{rel}" if key else f"/{rel}", owner,
                              (st.st_dev, st.st_ino)))
    return out


#: a directory opened to be listed, never through a symbolic link, never inherited
_LIST = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _perf_files(root: str) -> Optional[List[Tuple[str, str, os.stat_result]]]:
    """(directory name, file name, lstat) of every ``<root>/tmp/hsperfdata_*/<digits>``
    (whatever it is: :func:`sparkwatch.hotspot.perfdata.read_bytes` opens nothing but a
    regular file); None when ``<root>/tmp`` is not a directory that can be opened. Neither ``tmp`` nor a ``hsperfdata_*`` directory is followed if it is a
    symbolic link: ``root`` is ``/proc/<pid>/root`` for another mount namespace, and a
    link there (made by whoever is root in that container) resolves against the
    exporter's own root, not the container's. Everything is listed through directory
    descriptors opened one from the other, so nothing swapped meanwhile redirects it."""
    out: List[Tuple[str, str, os.stat_result]] = []
    try:
        top = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)  # /proc/<pid>/root: the kernel's own link
    except OSError:
        return None
    try:
        tmp = os.open("tmp", _LIST, dir_fd=top)
    except OSError:
        return None
    finally:
        os.close(top)
    try:
        with os.scandir(tmp) as it:
            dirs = [e.name for e in it if e.name.startswith("hsperfdata_") and e.is_dir(follow_symlinks=False)]
        for name in dirs:
            try:
                d = os.open(name, _LIST, dir_fd=tmp)
            except OSError:
                continue
            try:
                with os.scandir(d) as it:
                    # as HotSpot names them: the pid in ASCII digits, no leading zero
                    for e in it:
                        if e.name.isascii() and e.name.isdigit() and e.name[0] != "0":
                            try:
                                out.append((name, e.name, e.stat(follow_symlinks=False)))
                            except OSError:
                                continue
            except OSError:
                pass
            finally:
                os.close(d)
    except OSError:
        pass
    finally:
        os.close(tmp)
    return out


#: lines of /proc/<pid>/maps read between two looks at the clock (a process may have up to
#: vm.max_map_count mappings, 65,530 by default: some 120 MB of text and a second of CPU)
MAPS_LINES_PER_LOOK = 256
#: what :func:`_maps_file` says when the time was up before it had read every mapping
OUT_OF_TIME = object()


def _maps_file(pid: int, dirname: str, n: int, out_of_time: Optional[Callable[[], bool]] = None):
    """Whether process ``pid`` has the perf file ``<dirname>/<n>`` mapped, as a JVM
    maps its own from its start to its end; None when its mappings cannot be read
    (no CAP_SYS_PTRACE for a process of another user); :data:`OUT_OF_TIME` when
    ``out_of_time()`` said so before every mapping was read (it is asked every
    :data:`MAPS_LINES_PER_LOOK` lines: whoever runs the process chooses how many it has)."""
    needle = os.fsencode(f"/{dirname}/{n}")
    try:
        with open(f"/proc/{pid}/maps", "rb") as f:
            for i, line in enumerate(f, 1):
                if line.rstrip(b"\n").endswith(needle):
                    return True
                if out_of_time is not None and i % MAPS_LINES_PER_LOOK == 0 and out_of_time():
                    return OUT_OF_TIME
            return False
    except PermissionError:
        return None
    except OSError:
        return False


def scan_host(deadline=None, unread: Optional[List[str]] = None) -> Tuple[procstats.HostSnapshot, List[JvmRef]]:
    """One pass over /proc: the host's processes and its JVMs; telling apart two processes
    with a file's pid may take :data:`FILES_SHARE` of the time left in ``deadline`` (an
    :class:`sparkwatch.collector.Deadline`), the files left are added to ``unread``
    (see :func:`find_jvms`)."""
    snap = procstats.host_snapshot()
    out_of_time = None
    if deadline is not None:
        reserve = deadline.remaining() * (1 - FILES_SHARE)
        out_of_time = lambda: deadline.remaining() <= reserve  # noqa: E731
    return snap, find_jvms(snap, out_of_time, unread)


# --------------------------------------------------------------------------
# Reading the files that are JVMs'

#: (a file, the arguments of its process, or None when /proc/<pid>/cmdline cannot be read)
Candidate = Tuple[JvmRef, Optional[List[str]]]


class Skipped:
    """The files of one scrape that were skipped: how many per reason, and the first of each."""

    def __init__(self):
        self.count: Dict[str, int] = {r: 0 for r in SKIP_REASONS}
        self.example: Dict[str, str] = {}

    def add(self, reason: str, path: str) -> None:
        self.count[reason] += 1
        self.example.setdefault(reason, path)

    def describe(self) -> List[str]:
        """One phrase per reason that skipped files: how many, why, and one of them."""
        return [f"{self.count[r]} {_SKIP_TEXT[r]} (e.g. {self.example[r]})" for r in SKIP_REASONS if self.count[r]]


@dataclass
class Reading:
    """What one scrape's reading of the perf-data files found."""

    #: (file, its perf data, its process' arguments) of every JVM and its own file, in the order read;
    #: the arguments are what the JVM recorded when /proc/<pid>/cmdline could not be read
    jvms: List[Tuple[JvmRef, perfdata.PerfData, List[str]]] = field(default_factory=list)
    skipped: Skipped = field(default_factory=Skipped)
    #: (pid, message) of every JVM whose own file could not be read: a partial error of the target
    unreadable: List[Tuple[int, str]] = field(default_factory=list)


class PerfFiles:
    """The perf-data files one jvm target reads, and what it knows of them between
    scrapes: for each file (``(pid, file_id)``), whether its process maps it, kept
    for the process' life (a pid reused by a new process starts afresh).

    Not thread-safe: one per collector (the engine never runs a collector's
    scrapes at once). Call :meth:`forget` with every scrape's files, or the
    verdicts of files that are gone stay.
    """

    def __init__(self):
        #: (pid, file id) -> (process start time, True: its process maps it | the reason it is skipped)
        self._verdicts: Dict[Tuple[int, Tuple[int, int]], Tuple[float, object]] = {}

    def read(self, cands: List[Candidate], deadline) -> Reading:
        """Read ``cands`` (in :meth:`order`) within :data:`FILES_SHARE` of the time
        left in ``deadline`` (an :class:`sparkwatch.collector.Deadline`): the JVMs
        and their files, the files skipped, the JVMs whose file could not be read.
        The files left when the time is up are skipped as ``unread``."""
        # reading the files may take part of the deadline only: the JVMs found need the rest
        reserve = deadline.remaining() * (1 - FILES_SHARE)
        reading = Reading()
        self._read_files(self.order(cands), deadline, reserve, reading)
        return reading

    def forget(self, refs: List[JvmRef]) -> None:
        """Drop what is known of every file not among ``refs`` (this scrape's files)."""
        listed = {(r.pid, r.file_id) for r in refs}
        for key in [k for k in self._verdicts if k not in listed]:
            del self._verdicts[key]

    def order(self, cands: List[Candidate]) -> List[Candidate]:
        """The order files are read in, which garbage cannot starve: the files of
        JVMs known from earlier scrapes first; then the files of each owner (user)
        in turn, one of each owner per round, an owner's java launchers before its
        other processes. Whoever leaves a thousand files in their own directory
        delays their own files, not those of the other users."""
        by_owner: Dict[int, list] = {}
        for c in cands:
            by_owner.setdefault(c[0].owner, []).append(c)
        keyed = []
        for owner, cs in by_owner.items():
            cs.sort(key=lambda c: (not _java_launcher(c[1]), c[0].path))
            for rank, c in enumerate(cs):
                known = self._verdicts.get((c[0].pid, c[0].file_id), (None, None))[1] is True
                keyed.append(((not known, rank, owner), c))
        keyed.sort(key=lambda kc: kc[0])
        return [c for _, c in keyed]

    def _read_files(self, cands: List[Candidate], deadline, reserve: float, reading: Reading) -> None:
        """Read every candidate in the order of ``cands`` into ``reading``. Files that
        are not ready are read again, all together, RETRY_DELAY later (READ_ATTEMPTS
        reads at most). Reading stops when no more than ``reserve`` seconds are
        left in the deadline."""
        skipped = reading.skipped
        out_of_time = lambda: deadline.remaining() <= reserve  # noqa: E731
        pending = [(ref, args, None) for ref, args in cands]
        for attempt in range(READ_ATTEMPTS):
            if attempt:
                if deadline.remaining() - RETRY_DELAY <= reserve:
                    break
                time.sleep(RETRY_DELAY)
            again = []
            for i, (ref, args, started) in enumerate(pending):
                if deadline.remaining() <= reserve:
                    for r, _, _ in pending[i:]:
                        skipped.add("unread", r.path)
                    again = []
                    break
                if started is None:
                    try:
                        started = psutil.Process(ref.pid).create_time()
                    except psutil.Error:
                        continue  # exited
                got = self._read_one(ref, args, started, reading, out_of_time)
                if got is OUT_OF_TIME:  # its mappings were not all read in time: this file and the rest
                    for r, _, _ in pending[i:]:
                        skipped.add("unread", r.path)
                    again = []
                    break
                if got is _NOT_READY:
                    again.append((ref, args, started))
                elif got is not None:
                    reading.jvms.append(got)
            pending = again
            if not pending:
                break
        for ref, _, _ in pending:
            skipped.add("not_ready", ref.path)

    def _read_one(self, ref: JvmRef, args: Optional[List[str]], started: float, reading: Reading,
                  out_of_time: Optional[Callable[[], bool]] = None):
        """(ref, perf data, args) for a JVM and its file (its process started at
        ``started``); None for anything else (counted in ``reading.skipped``, or
        this JVM's file unreadable); _NOT_READY; OUT_OF_TIME (``out_of_time()``
        said so while its process' mappings were read; nothing counted)."""
        key = (ref.pid, ref.file_id)
        verdict = self._verdicts.get(key)
        if verdict is not None and verdict[0] != started:
            verdict = None  # the pid has been reused
        mapped = None if verdict is None else verdict[1]
        if isinstance(mapped, str):  # a file its process does not map: known from an earlier scrape
            reading.skipped.add(mapped, ref.path)
            return None
        try:
            # the file listed, and no other: a /tmp swapped for a symbolic link since leads nowhere
            pd = perfdata.read_file(ref.path, attempts=1, file_id=ref.file_id if ref.file_id != (0, 0) else None)
        except FileNotFoundError:
            return None  # exited, its file removed
        except perfdata.NotReady:
            return _NOT_READY
        except (perfdata.NotHotSpot, OSError) as e:
            if mapped is None:
                mapped = self._verify(ref, started, "not_hotspot", out_of_time)
            if mapped is OUT_OF_TIME:
                return OUT_OF_TIME
            if mapped is not True:  # not its JVM's file, or no sign that it is (mappings unreadable)
                reading.skipped.add("not_hotspot", ref.path)
                return None
            if not os.path.exists(f"/proc/{ref.pid}"):
                return None
            reading.unreadable.append((ref.pid, f"cannot read {ref.path}: {e}"))
            return None
        if mapped is None:
            mapped = self._verify(ref, started, "not_mapped", out_of_time)
        if mapped is OUT_OF_TIME:
            return OUT_OF_TIME
        if isinstance(mapped, str):  # (None: its mappings cannot be read, the file is taken as its JVM's)
            reading.skipped.add(mapped, ref.path)
            return None
        if args is None:  # /proc/<pid>/cmdline unreadable: what the JVM recorded
            args = (pd.str("java.rt.vmArgs") or "").split() + (pd.str("sun.rt.javaCommand") or "").split()
        if _stale(pd, started):
            return None
        return ref, pd, args

    def _verify(self, ref: JvmRef, started: float, otherwise: str, out_of_time=None):
        """True when the process has its file mapped (a JVM maps its own from its
        start to its end), else ``otherwise`` (the reason it is skipped); the
        verdict is kept for the process' life. None when its mappings cannot be
        read (no CAP_SYS_PTRACE for a process of another user; not kept): the
        file's content decides. OUT_OF_TIME (not kept) when ``out_of_time()``
        said so before they were all read."""
        dirname = os.path.basename(os.path.dirname(ref.path))
        mapped = _maps_file(ref.pid, dirname, ref.nspid, out_of_time)
        if mapped is None or mapped is OUT_OF_TIME:
            return mapped
        verdict = True if mapped else otherwise
        self._verdicts[(ref.pid, ref.file_id)] = (started, verdict)
        return verdict


def _stale(pd: perfdata.PerfData, created: float) -> bool:
    """A perf file left behind by a JVM that was killed, its pid now reused by a
    process of the same user (started at ``created``): that process started
    after the file's JVM. The margin covers wall-clock steps (both times are
    wall-clock based); a pid is reused only after the kernel has gone through
    pid_max others."""
    begin = pd.int("sun.rt.createVmBeginTime")
    if not begin:
        return False
    return begin / 1000.0 < created - 60


_NOT_READY = object()


def _java_launcher(args: Optional[List[str]]) -> bool:
    """Whether a command line starts with a ``java`` binary (only an order of reading: anyone may name a
    program java)."""
    return bool(args) and os.path.basename(args[0]) == "java"
