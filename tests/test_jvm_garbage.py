"""The jvm collector against perf-data files a local user leaves in /tmp.

Any local user can create ``/tmp/hsperfdata_<self>/<pid>`` for each of their
own processes, with any content: the real JVMs of the host must still be
reported, within the deadline, with a bounded number of log lines
(testbed/hsperf_garbage.py lists the kinds of file and what each must count as).
"""

from __future__ import annotations

import logging
import os
import subprocess
import uuid

import pytest

from testbed import hsperf_garbage as garbage
from testbed.exporter import find, running_exporter, samples, scrape, value
from testbed.jvm import proc_threads, running_jvm
from testbed.procs import stop_process_group
from tests.helpers import os_user, requires_java

#: garbage files (and as many processes of the attacking user): every kind, many times
FILES = 50 * len(garbage.KINDS)


def warnings_of(caplog):
    return [r for r in caplog.records if r.levelno >= logging.WARNING]


@requires_java
@pytest.mark.slow
def test_garbage_perf_files_of_live_processes_do_not_hide_the_real_jvms(jvm_classes, caplog):
    token = f"swgarbage{uuid.uuid4().hex[:8]}"
    # the target claims the real JVMs and the attacker's processes alike (their
    # command lines carry the token): every garbage file is read
    cfg = {"exporter": {"scrape_timeout": 5},
           "jvm": [{"name": "real", "match": token}]}
    with running_jvm(jvm_classes, "Workload", args=[f"{token}-a"]) as a, \
            running_jvm(jvm_classes, "Workload", args=[f"{token}-b"]) as b, \
            os_user("swgarb") as attacker, \
            garbage.sleepers(attacker, FILES, argv0=f"/opt/{token}/bin/java") as sleeps:
        a.command("counts")  # idle: its file is copied whole
        with garbage.garbage_dir(attacker, [p.pid for p in sleeps], garbage.KINDS,
                                 f"/tmp/hsperfdata_root/{a.pid}") as made, \
                garbage.proc_lookalike_dir(attacker), running_exporter(cfg) as (url, _):
            expected = garbage.expected_counts(made)
            caplog.clear()
            with caplog.at_level(logging.INFO):
                for n in (1, 2):
                    ss = samples(scrape(url))
                    assert value(ss, "sparkwatch_target_up", kind="jvm", target="real") == 1
                    assert not find(ss, "sparkwatch_target_scrape_errors_total", target="real")
                    assert value(ss, "jvm_processes", target="real") == 2
                    assert {s[1]["pid"] for s in find(ss, "jvm_info", process="real")} == {str(a.pid), str(b.pid)}
                    assert value(ss, "jvm_threads_live", process="real", pid=str(b.pid)) > 0
                    for reason in garbage.EXPECTED.values():
                        assert value(ss, "jvm_perfdata_files_skipped_total", target="real", reason=reason) \
                            == n * expected[reason], reason
                    assert value(ss, "jvm_perfdata_files_skipped_total", target="real", reason="unread") == 0
            # one summary line, not one per file or per scrape
            lines = [r.getMessage() for r in warnings_of(caplog)]
            assert len(lines) == 1, lines[:5]
            assert f"skipped {FILES} perf-data files" in lines[0]
            assert f"/tmp/hsperfdata_{attacker}/" in lines[0]


@requires_java
def test_real_jvm_whose_file_is_overwritten_is_that_jvms_partial_error(jvm_classes, caplog):
    """A file its JVM has mapped but that is not HotSpot's any more (root wrote
    over its magic): that JVM cannot be read (partial, one warning), the other is."""
    token = f"swclobber{uuid.uuid4().hex[:8]}"
    cfg = {"jvm": [{"name": "clobber", "match": token}]}
    with running_jvm(jvm_classes, "Workload", args=[f"{token}-a"]) as a, \
            running_jvm(jvm_classes, "Workload", args=[f"{token}-b"]) as b, \
            running_exporter(cfg) as (url, _):
        with open(f"/tmp/hsperfdata_root/{a.pid}", "r+b") as f:
            f.write(b"GARBAGE!")
        with caplog.at_level(logging.INFO):
            for n in (1, 2):
                ss = samples(scrape(url))
                assert value(ss, "sparkwatch_target_up", kind="jvm", target="clobber") == 1
                assert value(ss, "sparkwatch_target_scrape_errors_total", target="clobber", reason="partial") == n
                assert value(ss, "jvm_processes", target="clobber") == 1
                assert value(ss, "jvm_threads_live", process="clobber", pid="") > 0
                assert value(ss, "jvm_perfdata_files_skipped_total", target="clobber", reason="not_hotspot") == 0
        lines = [r.getMessage() for r in warnings_of(caplog) if r.name == "sparkwatch.jvm"]
        assert len(lines) == 1 and str(a.pid) in lines[0] and "magic" in lines[0], lines
        assert b.proc.poll() is None


def test_garbage_file_of_a_process_that_is_not_a_jvm_is_skipped_not_an_error():
    """One garbage file for a live ``sleep``: not a JVM, not the target's error."""
    sleeper = subprocess.Popen(["sleep", "300"], start_new_session=True)
    d = f"/tmp/hsperfdata_swjvmcorrupt{os.getpid()}"
    os.makedirs(d, exist_ok=True)
    try:
        with open(f"{d}/{sleeper.pid}", "wb") as f:
            f.write(b"\xca\xfe\xc0\xc0\x01\x02\x00\x01" + b"\xff" * 200)
        cfg = {"jvm": [{"name": "corrupt", "match": r"^sleep 300$"}]}
        with running_exporter(cfg) as (url, _):
            ss = samples(scrape(url))
        assert value(ss, "sparkwatch_target_up", kind="jvm", target="corrupt") == 1
        assert not find(ss, "sparkwatch_target_scrape_errors_total", target="corrupt")
        assert value(ss, "jvm_processes", target="corrupt") == 0
        assert value(ss, "jvm_perfdata_files_skipped_total", target="corrupt", reason="not_hotspot") == 1
    finally:
        stop_process_group(sleeper, grace=0)
        import shutil

        shutil.rmtree(d, ignore_errors=True)


def test_a_process_is_read_only_when_it_maps_its_file():
    """The kernel's word decides whose file it is: a process that has its
    perf-data file mapped is read (whatever it is); one that has not (the file
    is a copy) is skipped as not_mapped."""
    from tests.test_perfdata import build

    token = f"swmapped{uuid.uuid4().hex[:8]}"
    data = build([("sun.rt.javaCommand", "org.example.Mapped", "string", 1), ("java.threads.live", 3, "none", 3)])
    cfg = {"jvm": [{"name": "mapped", "match": token}]}
    with garbage.file_holder(data, token, maps=True) as holder, garbage.file_holder(data, token, maps=False), \
            running_exporter(cfg) as (url, _):
        ss = samples(scrape(url))
        threads = proc_threads(holder.pid)
    assert value(ss, "sparkwatch_target_up", kind="jvm", target="mapped") == 1
    assert not find(ss, "sparkwatch_target_scrape_errors_total", target="mapped")
    assert value(ss, "jvm_processes", target="mapped") == 1
    assert value(ss, "jvm_threads_live", process="mapped", pid="") == 3
    assert find(ss, "jvm_info", process="mapped")[0][1]["main_class"] == "org.example.Mapped"
    assert value(ss, "jvm_process_threads", process="mapped", pid="") == threads
    assert value(ss, "jvm_perfdata_files_skipped_total", target="mapped", reason="not_mapped") == 1


def test_files_are_read_in_an_order_garbage_cannot_starve():
    """Known JVMs first; then one file of each owner per round, an owner's java
    launchers first: 1,000 files of one user delay that user's files only."""
    from sparkwatch.hotspot.discovery import JvmRef, PerfFiles

    c = PerfFiles()
    attacker = [(JvmRef(10_000 + i, 10_000 + i, f"/tmp/hsperfdata_x/{10_000 + i}", 1001, (1, i)), ["java", "x"])
                for i in range(1000)]
    spark = [(JvmRef(500, 500, "/tmp/hsperfdata_spark/500", 185, (1, 5000)), ["/opt/java/bin/java", "Executor"]),
             (JvmRef(501, 501, "/tmp/hsperfdata_spark/501", 185, (1, 5001)), ["python3", "embeds-a-jvm"])]
    root = [(JvmRef(7, 7, "/tmp/hsperfdata_root/7", 0, (1, 7)), ["sh", "-c", "jsvc"]),
            (JvmRef(8, 8, "/tmp/hsperfdata_root/8", 0, (1, 8)), ["java", "LivyServer"])]
    known = (JvmRef(9, 9, "/tmp/hsperfdata_x/9", 1001, (1, 9)), ["java", "x"])
    c._verdicts[(9, (1, 9))] = (123.0, True)
    order = [r.pid for r, _ in c.order(attacker + spark + root + [known])]
    assert order[0] == 9  # known from an earlier scrape
    assert order[1:4] == [8, 500, 10_000]  # one per owner (by uid), each owner's java launcher first
    assert order[4:7] == [7, 501, 10_001]
    assert len(order) == 1005 and set(order[7:]) == {10_000 + i for i in range(2, 1000)}


def test_files_left_unread_when_their_time_is_up_are_counted_not_the_targets_end(caplog):
    """A clock that moves 0.1 s at every look: the files' half of a 10 s deadline
    lasts about 50 files. The JVM of another user is read in the first round,
    the rest of the attacker's files are left unread (partial), the target ends
    in time with what it has."""
    from sparkwatch.collector import Deadline, MetricSet, ScrapeContext
    from sparkwatch.collectors.jvm import JvmCollector, JvmTarget
    from testbed.exporter import collected_value
    from tests.test_perfdata import build

    class Ticking:
        t = 0.0

        def __call__(self):
            self.t += 0.1
            return self.t

    token = f"swunread{uuid.uuid4().hex[:8]}"
    data = build([("sun.rt.javaCommand", "org.example.Real", "string", 1), ("java.threads.live", 5, "none", 3)])
    with os_user("swunr") as attacker, garbage.sleepers(attacker, 150, argv0=f"/opt/{token}/bin/java") as sleeps, \
            garbage.file_holder(data, token, maps=True), \
            garbage.garbage_dir(attacker, [p.pid for p in sleeps], ["random"], "/dev/null"):
        c = JvmCollector(JvmTarget(name="unread", match=token))
        out = MetricSet()
        with caplog.at_level(logging.INFO):
            c.collect(out, ScrapeContext(Deadline(10, clock=Ticking())))
    assert collected_value(out, "jvm_processes") == 1
    assert collected_value(out, "jvm_threads_live", process="unread", app_id="", executor_id="", pid="") == 5
    unread = collected_value(out, "jvm_perfdata_files_skipped_total", reason="unread")
    garbage_read = collected_value(out, "jvm_perfdata_files_skipped_total", reason="not_hotspot")
    assert unread > 0 and garbage_read > 0 and unread + garbage_read == 150
    assert "partial" in out.errors
    lines = [r.getMessage() for r in warnings_of(caplog)]
    assert len(lines) == 1 and f"{int(unread)} left unread" in lines[0], lines


def test_without_the_mappings_the_content_decides(monkeypatch):
    """An exporter that may not read other users' /proc/<pid>/maps (root without
    CAP_SYS_PTRACE: a container's default capabilities) cannot tell a copy from
    a JVM's own file: a valid file is read as its process' (as before), garbage
    is skipped as not_hotspot, never a JVM's partial error."""
    from sparkwatch.hotspot import discovery
    from tests.test_perfdata import build

    monkeypatch.setattr(discovery, "_maps_file", lambda pid, dirname, n, out_of_time=None: None)
    token = f"swnomaps{uuid.uuid4().hex[:8]}"
    good = build([("sun.rt.javaCommand", "org.example.Copy", "string", 1), ("java.threads.live", 4, "none", 3)])
    cfg = {"jvm": [{"name": "nomaps", "match": token}]}
    with garbage.file_holder(good, token, maps=False), garbage.file_holder(b"\x7fELF" + bytes(100), token, maps=False), \
            running_exporter(cfg) as (url, _):
        for n in (1, 2):
            ss = samples(scrape(url))
            assert value(ss, "sparkwatch_target_up", kind="jvm", target="nomaps") == 1
            assert not find(ss, "sparkwatch_target_scrape_errors_total", target="nomaps")
            assert value(ss, "jvm_processes", target="nomaps") == 1
            assert value(ss, "jvm_threads_live", process="nomaps", pid="") == 4
            assert value(ss, "jvm_perfdata_files_skipped_total", target="nomaps", reason="not_hotspot") == n
            assert value(ss, "jvm_perfdata_files_skipped_total", target="nomaps", reason="not_mapped") == 0


#: a process with ``count`` mappings of one file (none of them a perf-data file), then waiting
_MANY_MAPPINGS = r"""
import ctypes, os, sys
libc = ctypes.CDLL("libc.so.6", use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
fd = os.open(sys.argv[1], os.O_RDONLY)
for i in range(int(sys.argv[2])):
    # alternate offsets: neighbouring mappings are not merged into one line
    assert libc.mmap(None, 4096, 1, 1, fd, 4096 * (i % 2)) not in (None, ctypes.c_void_p(-1).value)
print("ready", flush=True)
sys.stdin.read()
"""


def test_the_mappings_of_a_process_are_read_within_the_files_share_of_the_deadline(tmp_path):
    """A local user's process with tens of thousands of mappings (up to vm.max_map_count,
    some 120 MB of /proc/<pid>/maps, a second of CPU to read) and a garbage perf-data
    file: its mappings are read only while the files' share of the deadline lasts (the
    clock is looked at as they are read, not only between files); the file is then left
    unread, its verdict not kept."""
    import sys

    from sparkwatch.collector import Deadline
    from sparkwatch.hotspot.discovery import JvmRef, PerfFiles

    class Ticking:  # 0.1 s at every look: the files' half of a 10 s deadline lasts some 50 looks
        t = 0.0

        def __call__(self):
            self.t += 0.1
            return self.t

    mapped = tmp_path / "mapped"
    mapped.write_bytes(bytes(8192))
    p = subprocess.Popen([sys.executable, "-c", _MANY_MAPPINGS, str(mapped), "30000"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, start_new_session=True)
    d = tmp_path / "hsperfdata_swmaps"
    try:
        assert p.stdout.readline().strip() == "ready"
        d.mkdir()
        f = d / str(p.pid)
        f.write_bytes(b"\x7fELF" + bytes(100))
        st = f.stat()
        ref = JvmRef(p.pid, p.pid, str(f), st.st_uid, (st.st_dev, st.st_ino))
        files = PerfFiles()
        reading = files.read([(ref, ["java", "x"])], Deadline(10, clock=Ticking()))
        assert reading.skipped.count["unread"] == 1
        assert reading.skipped.count["not_hotspot"] == 0
        assert not reading.jvms and not files._verdicts
    finally:
        stop_process_group(p, grace=0)
        p.stdin.close()
        p.stdout.close()


def _chrooted_sleeper(root, tmp_target=None) -> subprocess.Popen:
    """A ``sleep`` in a mount namespace of its own, chrooted to ``root`` (the host's /usr
    bound into it): a container's process, as /proc/<pid>/root shows it. Its /tmp is a
    directory, or a symbolic link to ``tmp_target`` (what a container's root may make)."""
    import shutil
    import time

    for d in ("bin", "lib", "lib64", "sbin"):
        if os.path.islink(f"/{d}"):
            os.symlink(os.readlink(f"/{d}"), root / d)
    (root / "usr").mkdir()
    if tmp_target is None:
        (root / "tmp").mkdir()
    else:
        os.symlink(tmp_target, root / "tmp")
    script = f'mount --bind /usr "{root}/usr" && exec chroot "{root}" /usr/bin/sleep 300'
    p = subprocess.Popen([shutil.which("unshare"), "-m", "--propagation", "private", "sh", "-c", script],
                         start_new_session=True)
    for _ in range(500):  # until the exec is done
        try:
            if os.readlink(f"/proc/{p.pid}/exe").endswith("/sleep"):
                return p
        except OSError:
            pass
        time.sleep(0.01)
    stop_process_group(p, grace=0)
    raise AssertionError("the chrooted sleep did not start")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (unshare, mount, chroot)")
def test_a_containers_tmp_that_is_a_symbolic_link_is_not_followed(tmp_path):
    """/proc/<pid>/root/tmp, a symbolic link a container's root made, would resolve
    against the exporter's own root (an absolute link: the node's /tmp, or another
    pod's /proc/<pid>/root/tmp): whatever perf-data file lies there would be read as
    that container's process' JVM. A real /tmp is listed; a symbolic link is not."""
    from sparkwatch import procstats
    from sparkwatch.hotspot.discovery import find_jvms
    from tests.test_perfdata import build

    data = build([("sun.rt.javaCommand", "org.example.Elsewhere", "string", 1)])
    elsewhere = tmp_path / "elsewhere"  # on the exporter's side
    (elsewhere / "hsperfdata_swlink").mkdir(parents=True)
    (tmp_path / "real").mkdir()
    (tmp_path / "linked").mkdir()
    real = _chrooted_sleeper(tmp_path / "real")
    linked = _chrooted_sleeper(tmp_path / "linked", tmp_target=str(elsewhere))
    try:
        (tmp_path / "real" / "tmp" / "hsperfdata_swlink").mkdir()
        (tmp_path / "real" / "tmp" / "hsperfdata_swlink" / str(real.pid)).write_bytes(data)
        (elsewhere / "hsperfdata_swlink" / str(linked.pid)).write_bytes(data)
        found = {r.pid: r for r in find_jvms(procstats.host_snapshot())}
        assert real.pid in found and found[real.pid].path == f"/proc/{real.pid}/root/tmp/hsperfdata_swlink/{real.pid}"
        assert linked.pid not in found
    finally:
        stop_process_group(real, grace=0)
        stop_process_group(linked, grace=0)


#: run as `unshare -m python -c _TWO_PID_ONES`: a /tmp of its own, with the perf-data file
#: /tmp/hsperfdata_root/1, and two processes that are pid 1 each, in pid namespaces of their
#: own, in this mount namespace: one with 30,000 mappings of another file, one that maps the
#: perf-data file; their pids (ours) printed, the one that maps the file last
_TWO_PID_ONES = r"""
import os, subprocess, sys
subprocess.run(["mount", "-t", "tmpfs", "tmpfs", "/tmp"], check=True)
os.mkdir("/tmp/hsperfdata_root")
for path in ("/tmp/hsperfdata_root/1", "/tmp/other"):
    with open(path, "wb") as f:
        f.write(bytes(8192))
kids = [subprocess.Popen(["unshare", "-p", "--fork", sys.executable, "-c", sys.argv[1], path, n],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for path, n in (("/tmp/other", "30000"), ("/tmp/hsperfdata_root/1", "1"))]
for k in kids:
    assert k.stdout.readline().strip() == "ready"
pids = []
for k in kids:  # the python under unshare --fork
    with open(f"/proc/{k.pid}/task/{k.pid}/children") as f:
        pids.append(f.read().split()[0])
print(*pids, flush=True)
sys.stdin.read()
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (unshare, mount)")
def test_two_processes_with_the_files_pid_are_told_apart_within_the_deadline():
    """Two processes of one mount namespace whose pid (in their own pid namespaces) is the
    file's name: the one that maps it is its process. Their mappings are read with the
    clock looked at as for any other (whoever runs the processes chooses how many
    mappings they have): when the time is up, the file is left unread, and said so."""
    import sys

    from sparkwatch import procstats
    from sparkwatch.hotspot import discovery

    # the child mounts a tmpfs over /tmp: the interpreter it runs must not live there (a checkout,
    # and so its .venv, may well be under /tmp); the children need nothing but the standard library
    python = os.path.realpath(sys.executable)
    assert not python.startswith("/tmp/"), python
    p = subprocess.Popen(["unshare", "-m", "--propagation", "private", python, "-c", _TWO_PID_ONES,
                          _MANY_MAPPINGS], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                         start_new_session=True)
    try:
        crowded, mapper = (int(x) for x in p.stdout.readline().split())
        snap = procstats.host_snapshot()
        assert snap.procs[crowded].nspid[-1] == snap.procs[mapper].nspid[-1] == 1
        assert snap.procs[crowded].mntns == snap.procs[mapper].mntns != snap.self_mntns

        def ours(refs):
            return [r for r in refs if r.pid in (crowded, mapper)]

        assert [r.pid for r in ours(discovery.find_jvms(snap))] == [mapper]  # time enough

        looks = []
        unread = []
        refs = discovery.find_jvms(snap, out_of_time=lambda: looks.append(1) or True, unread=unread)
        assert not ours(refs)
        assert len(unread) == 1 and unread[0].endswith("/root/tmp/hsperfdata_root/1")
        assert len(looks) == 1  # the first look (256 mappings) found the time up: no more read
    finally:
        stop_process_group(p, grace=0)
        p.stdin.close()
        p.stdout.close()
