"""The jvm collector against real JVMs (Java 17), compared with jcmd and /proc."""

from __future__ import annotations

import os
import pwd
import re
import signal
import shutil
import socket
import subprocess
import sys
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Iterator

import psutil
import pytest

from sparkwatch import procstats
from sparkwatch.config import ConfigError, load_config, parse_config
from sparkwatch.hotspot import attach as hs_attach
from testbed.exporter import find, running_exporter, samples, scrape, value
from testbed.jvm import jcmd, perf_counters, proc_threads, running_jvm, threads_of_uid
from testbed.procs import stop_process_group
from tests.helpers import os_user, requires_java


def settled(url, probe):
    """Scrape between two equal readings of ``probe`` (what /proc says), so that
    the comparison is exact even though the JVM may start or end a thread."""
    import time

    for _ in range(30):
        before = probe()
        ss = samples(scrape(url))
        if probe() == before:
            return ss, before
        time.sleep(0.2)
    raise AssertionError("the process never kept still")


def one(ss, name, **labels):
    return value(ss, name, **labels)


# ------------------------------------------------------------------ config


def test_config_shape_and_validation():
    cfg = parse_config({"jvm": [{"name": "livy", "match": "LivyServer", "attach": True},
                                {"discover": True, "attach": False}]})
    assert [t.display_name() for t in cfg.jvm] == ["livy", "discover"]
    assert cfg.jvm[0].attach and not cfg.jvm[1].attach
    with pytest.raises(ConfigError, match=r"jvm\[0\].match: .*invalid regular expression"):
        parse_config({"jvm": [{"name": "x", "match": "Livy("}]})
    with pytest.raises(ConfigError, match="exactly one of match"):
        parse_config({"jvm": [{"name": "x", "match": "Livy", "discover": True}]})
    with pytest.raises(ConfigError, match="exactly one of match"):
        parse_config({"jvm": [{"name": "x"}]})
    with pytest.raises(ConfigError, match="exactly one of match"):
        parse_config({"jvm": [{"discover": False}]})
    with pytest.raises(ConfigError, match="needs a name"):
        parse_config({"jvm": [{"match": "Livy"}]})
    with pytest.raises(ConfigError, match="unknown key"):
        parse_config({"jvm": [{"discover": True, "atach": True}]})
    default = load_config(None)
    assert [(t.discover, t.attach) for t in default.jvm] == [(True, False)]


# ------------------------------------------------------------------ classes


@requires_java
def test_classes_defined_in_a_loop_agree_with_jcmd(jvm_classes):
    cfg = {"jvm": [{"name": "workload", "match": r"\bWorkload classes-test$"}]}
    with running_jvm(jvm_classes, "Workload", args=["classes-test"]) as jvm, running_exporter(cfg) as (url, _):
        before = one(samples(scrape(url)), "jvm_classes_currently_loaded", process="workload")
        for n in (300, 700):
            jvm.command(f"classes {n}")  # the JVM is idle once it answers
            answer = jvm.command("counts")  # the first answer itself may load a class or two
            mx_loaded = int(re.search(r"loaded=(\d+)", answer).group(1))
            ss = samples(scrape(url))
            pc = perf_counters(jvm.pid)
            loaded = one(ss, "jvm_classes_currently_loaded", process="workload")
            expected = (int(pc["java.cls.loadedClasses"]) + int(pc["java.cls.sharedLoadedClasses"])
                        - int(pc["java.cls.unloadedClasses"]) - int(pc["java.cls.sharedUnloadedClasses"]))
            assert loaded == expected
            assert loaded == mx_loaded  # what the JVM itself says (ClassLoadingMXBean)
            assert one(ss, "jvm_classes_loaded_total", process="workload") == \
                int(pc["java.cls.loadedClasses"]) + int(pc["java.cls.sharedLoadedClasses"])
        assert loaded >= before + 1000
        info = find(ss, "jvm_info", process="workload")
        assert len(info) == 1 and info[0][1]["main_class"] == "Workload"
        assert info[0][1]["version"].startswith("17")
        assert one(ss, "jvm_process_threads", process="workload") > 0


# ------------------------------------------------------------------ threads and RLIMIT_NPROC


@requires_java
def test_threads_against_nproc_limit(jvm_classes):
    limit = 120
    with os_user() as user:
        uid = pwd.getpwnam(user).pw_uid
        cfg = {"jvm": [{"name": "threads", "match": r"\bWorkload\b.*nproc-test"}]}
        with running_jvm(jvm_classes, "Workload", args=["nproc-test"], user=user, nproc=limit) as jvm, \
                running_exporter(cfg) as (url, _):
            answer = jvm.command(f"threads {limit - 8}")
            assert "failed=false" in answer

            def probe():
                return proc_threads(jvm.pid), threads_of_uid(uid)

            ss, (threads, user_threads) = settled(url, probe)
            assert threads >= limit - 8
            assert one(ss, "jvm_process_threads", process="threads") == threads
            assert one(ss, "jvm_process_user_threads", process="threads") == user_threads
            # the file, not psutil's rlimit(): prlimit() on another user's process needs CAP_SYS_RESOURCE
            with open(f"/proc/{jvm.pid}/limits") as f:
                nproc = int(re.search(r"^Max processes\s+(\d+)", f.read(), re.M).group(1))
            assert nproc == limit
            assert one(ss, "jvm_process_nproc_limit", process="threads") == limit
            assert one(ss, "jvm_process_thread_limit", process="threads") == limit
            assert one(ss, "jvm_process_thread_headroom", process="threads") == limit - user_threads
            assert one(ss, "jvm_host_threads_max", target="threads") == \
                int(open("/proc/sys/kernel/threads-max").read())
            info = find(ss, "jvm_info", process="threads")
            assert info[0][1]["user"] == user

            # past the limit the JVM cannot start threads: the limit is real
            answer = jvm.command(f"threads {limit + 50}")
            assert "failed=true" in answer
            ss, (threads, user_threads) = settled(url, probe)
            assert user_threads <= limit
            assert one(ss, "jvm_process_user_threads", process="threads") == user_threads
            assert one(ss, "jvm_process_thread_headroom", process="threads") == limit - user_threads


@requires_java
def test_cgroup_v1_pids_limit(jvm_classes):
    base, v1 = procstats._cgroup_mounts()
    if v1 is None or not os.access(v1, os.W_OK):
        pytest.skip("no writable cgroup v1 pids hierarchy")
    cg = os.path.join(v1, f"swjvm{os.getpid()}")
    os.mkdir(cg)
    try:
        with open(os.path.join(cg, "pids.max"), "w") as f:
            f.write("500")
        cfg = {"jvm": [{"name": "cg", "match": r"\bWorkload\b.*cgroup-test"}]}
        with running_jvm(jvm_classes, "Workload", args=["cgroup-test"]) as jvm, running_exporter(cfg) as (url, _):
            with open(os.path.join(cg, "cgroup.procs"), "w") as f:
                f.write(str(jvm.pid))
            ss, (current, threads) = settled(url, lambda: (int(open(os.path.join(cg, "pids.current")).read()),
                                                           proc_threads(jvm.pid)))
            assert one(ss, "jvm_process_cgroup_pids", process="cg") == current == threads
            assert one(ss, "jvm_process_cgroup_pids_max", process="cg") == 500
            assert one(ss, "jvm_process_thread_limit", process="cg") == 500  # root: RLIMIT_NPROC does not apply
            jvm.kill()
    finally:
        for _ in range(50):
            try:
                os.rmdir(cg)
                break
            except OSError:
                import time

                time.sleep(0.1)


# ------------------------------------------------------------------ code cache and JIT


def _compile_until_disabled(jvm, url, process):
    for _ in range(40):
        jvm.command("compile 300")
        ss = samples(scrape(url))
        if one(ss, "jvm_jit_compilation_enabled", process=process) == 0:
            return
    raise AssertionError("the JIT was never disabled")


def _stable_scrape_and_jcmd(url, pid):
    """Scrape, jcmd, scrape until both scrapes agree (the sweeper may still free code)."""
    for _ in range(20):
        a = samples(scrape(url))
        text = jcmd(pid, "Compiler.codecache")
        b = samples(scrape(url))
        keep = lambda ss: sorted((n, tuple(sorted(lbl.items())), v) for n, lbl, v in ss  # noqa: E731
                                 if n.startswith("jvm_codecache") or n == "jvm_jit_compilation_enabled")
        if keep(a) == keep(b):
            return a, hs_attach.parse_codecache(text)
    raise AssertionError("code cache figures never settled")


@requires_java
@pytest.mark.slow
@pytest.mark.parametrize("segmented", [False, True], ids=["single", "segmented"])
def test_code_cache_full_disables_jit(jvm_classes, segmented):
    if segmented:
        opts = ["-XX:ReservedCodeCacheSize=8m", "-XX:+SegmentedCodeCache", "-XX:NonNMethodCodeHeapSize=3m",
                "-XX:ProfiledCodeHeapSize=2560k", "-XX:NonProfiledCodeHeapSize=2560k"]
        heaps = {"non-nmethods", "profiled nmethods", "non-profiled nmethods"}
    else:
        opts = ["-XX:ReservedCodeCacheSize=3m", "-XX:-SegmentedCodeCache"]
        heaps = {"CodeCache"}
    # no flushing, so that compilation stays disabled and the figures settle
    opts.append("-XX:-UseCodeCacheFlushing")
    cfg = {"jvm": [{"name": "jit", "match": r"\bWorkload\b.*codecache-test", "attach": True,
                    "attach_interval": 0}]}
    with running_jvm(jvm_classes, "Workload", args=["codecache-test"], jvm_opts=opts) as jvm, \
            running_exporter(cfg) as (url, _):
        ss = samples(scrape(url))
        assert one(ss, "jvm_jit_compilation_enabled", process="jit") == 1
        assert one(ss, "jvm_codecache_full_events_total", process="jit") == 0
        _compile_until_disabled(jvm, url, "jit")
        ss, cc = _stable_scrape_and_jcmd(url, jvm.pid)
        assert cc.compilation_enabled is False
        assert one(ss, "jvm_jit_compilation_enabled", process="jit") == 0
        assert one(ss, "jvm_codecache_full_events_total", process="jit") == cc.full_count >= 1
        assert set(cc.heaps) == heaps
        assert {s[1]["heap"] for s in find(ss, "jvm_codecache_used_bytes", process="jit")} == heaps
        for heap, v in cc.heaps.items():
            assert one(ss, "jvm_codecache_used_bytes", process="jit", heap=heap) == v["used"]
            assert one(ss, "jvm_codecache_max_bytes", process="jit", heap=heap) == v["size"]
            assert one(ss, "jvm_codecache_max_used_bytes", process="jit", heap=heap) == v["max_used"]
            assert one(ss, "jvm_codecache_free_bytes", process="jit", heap=heap) == v["free"]
        total = sum(v["size"] for v in cc.heaps.values())
        assert total == (8 if segmented else 3) * 1024 * 1024


# ------------------------------------------------------------------ another user, with and without attach


@requires_java
def test_jvm_of_another_user_is_discovered_and_read(jvm_classes):
    with os_user() as user:
        with running_jvm(jvm_classes, "Workload", args=["other-user-test"], user=user) as jvm:
            jvm.command("classes 10")
            pc = perf_counters(jvm.pid)
            cfg = {"jvm": [{"discover": True, "attach": False}]}
            with running_exporter(cfg) as (url, _):
                ss = samples(scrape(url))
            mine = [s for s in find(ss, "jvm_info") if s[1]["user"] == user]
            assert len(mine) == 1 and mine[0][1]["process"] == "Workload"
            lbl = {k: mine[0][1][k] for k in ("process", "app_id", "executor_id", "pid")}
            assert one(ss, "jvm_threads_live", **lbl) == int(pc["java.threads.live"])
            assert not find(ss, "jvm_codecache_used_bytes", **lbl)
            cfg = {"jvm": [{"name": "other", "match": r"other-user-test", "attach": True}]}
            with running_exporter(cfg) as (url, _):
                ss = samples(scrape(url))
            assert one(ss, "sparkwatch_target_up", kind="jvm", target="other") == 1
            assert not find(ss, "sparkwatch_target_scrape_errors_total", target="other")
            cc = hs_attach.parse_codecache(jcmd(jvm.pid, "Compiler.codecache"))
            assert {s[1]["heap"] for s in find(ss, "jvm_codecache_max_bytes", process="other")} == set(cc.heaps)
            for heap, v in cc.heaps.items():
                assert one(ss, "jvm_codecache_max_bytes", process="other", heap=heap) == v["size"]
            assert one(ss, "jvm_jit_compilation_enabled", process="other") == 1
            assert find(ss, "jvm_info", process="other")[0][1]["user"] == user


# ------------------------------------------------------------------ robustness


@requires_java
def test_jvm_killed_during_scrape(jvm_classes, monkeypatch):
    cfg = {"jvm": [{"name": "victim", "match": r"\bWorkload\b.*(victim|survivor)-test", "attach": True}]}
    with running_jvm(jvm_classes, "Workload", args=["victim-test"]) as victim, \
            running_jvm(jvm_classes, "Workload", args=["survivor-test"]) as survivor, \
            running_exporter(cfg) as (url, _):
        ss = samples(scrape(url))
        assert len(find(ss, "jvm_info", process="victim")) == 2  # both, told apart by pid
        pids = {s[1]["pid"] for s in find(ss, "jvm_info", process="victim")}
        assert pids == {str(victim.pid), str(survivor.pid)}

        real = procstats.process_stats

        def kill_first(pid, *a, **kw):
            if pid == victim.pid:
                os.kill(pid, signal.SIGKILL)  # a raw SIGKILL mid-scrape: the point of the test
                victim.proc.wait(10)
            return real(pid, *a, **kw)

        monkeypatch.setattr(procstats, "process_stats", kill_first)
        ss = samples(scrape(url))
        assert one(ss, "sparkwatch_target_up", kind="jvm", target="victim") == 1
        assert not find(ss, "sparkwatch_target_scrape_errors_total", target="victim", reason="internal")
        assert not [s for s in ss if s[0].startswith("jvm_") and s[1].get("pid") == str(victim.pid)]
        assert one(ss, "jvm_processes", target="victim") == 1
        assert one(ss, "jvm_threads_live", process="victim", pid=str(survivor.pid)) > 0
        monkeypatch.setattr(procstats, "process_stats", real)
        # the killed JVM's perf file is left behind (SIGKILL): it must not come back
        assert os.path.exists(f"/tmp/hsperfdata_root/{victim.pid}")
        ss = samples(scrape(url))
        assert one(ss, "jvm_processes", target="victim") == 1
        # the survivor is now alone with its labels: no pid needed any more
        assert one(ss, "jvm_threads_live", process="victim", pid="") > 0
        assert one(ss, "sparkwatch_target_up", kind="jvm", target="victim") == 1
        os.unlink(f"/tmp/hsperfdata_root/{victim.pid}")


def test_match_without_jvm_reports_zero():
    cfg = {"jvm": [{"name": "nothing", "match": "NoSuchMainClassAnywhere"}]}
    with running_exporter(cfg) as (url, _):
        ss = samples(scrape(url))
    assert one(ss, "sparkwatch_target_up", kind="jvm", target="nothing") == 1
    assert one(ss, "jvm_processes", target="nothing") == 0
    assert one(ss, "jvm_host_threads_max", target="nothing") > 0


@requires_java
def test_jvm_in_another_mount_and_pid_namespace(jvm_classes, tmp_path):
    """A "container": private /tmp, own pid namespace (the JVM is pid 1 there).
    Its perf file is only reachable through /proc/<pid>/root; attach too."""
    import shutil
    import tempfile

    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare")
    # the classes must be outside /tmp, which the namespace hides
    classes = tempfile.mkdtemp(prefix="swjvm-ns-", dir="/var/tmp")
    for f in os.listdir(jvm_classes):
        shutil.copy(os.path.join(jvm_classes, f), classes)
    os.chmod(classes, 0o755)
    script = (f"mount -t tmpfs tmpfs /tmp && exec {shutil.which('java')} -Xmx128m -cp {classes} "
              f"Workload namespace-test")
    proc = subprocess.Popen(["unshare", "--mount", "--pid", "--fork", "--mount-proc", "--propagation", "private",
                             "sh", "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("ready pid=1"), line
        [jvm] = psutil.Process(proc.pid).children()  # unshare's child: pid 1 in there, exec'd into java
        assert jvm.cmdline()[-2:] == ["Workload", "namespace-test"], jvm.cmdline()
        host_pid = jvm.pid
        assert not os.path.exists(f"/tmp/hsperfdata_root/{host_pid}")
        assert os.path.exists(f"/proc/{host_pid}/root/tmp/hsperfdata_root/1")
        cfg = {"jvm": [{"name": "ns", "match": r"Workload namespace-test", "attach": True}]}
        with running_exporter(cfg) as (url, _):
            scrape(url)  # the first attach starts a thread in the JVM
            ss, threads = settled(url, lambda: proc_threads(host_pid))
        assert one(ss, "jvm_processes", target="ns") == 1
        assert not find(ss, "sparkwatch_target_scrape_errors_total", target="ns")
        assert one(ss, "jvm_process_threads", process="ns") == threads
        assert one(ss, "jvm_threads_live", process="ns") > 0
        assert one(ss, "jvm_jit_compilation_enabled", process="ns") == 1
        assert len(find(ss, "jvm_codecache_used_bytes", process="ns")) == 3
    finally:
        stop_process_group(proc, grace=0)
        shutil.rmtree(classes, ignore_errors=True)


@requires_java
def test_spark_executor_labels_from_the_command_line(jvm_classes):
    args = ["--driver-url", "spark://x", "--executor-id", "7", "--app-id", "app-20250101000000-0001"]
    with running_jvm(jvm_classes, "Workload", args=args):
        with running_exporter({"jvm": [{"discover": True}]}) as (url, _):
            ss = samples(scrape(url))
    got = find(ss, "jvm_info", app_id="app-20250101000000-0001")
    assert len(got) == 1
    assert got[0][1]["executor_id"] == "7" and got[0][1]["process"] == "Workload" and got[0][1]["pid"] == ""


@requires_java
@pytest.mark.parametrize("where", ["command-line", "flags-file", "flags-file-stale-socket"])
def test_attach_that_never_answers_is_that_jvms_error(jvm_classes, tmp_path, where):
    """No listener ever comes up (DisableAttachMechanism: SIGQUIT only prints a
    thread dump): the JVM's perf-data metrics stay, the code cache is absent, a
    partial error is counted, the scrape finishes within its deadline. When the
    flag is on the command line the JVM is not signalled at all; when it is
    hidden (a flags file) it is signalled once, never again, even when a stale
    attach socket (left by an exited process that had the same pid) is there."""
    if where == "command-line":
        opts = ["-XX:+DisableAttachMechanism"]
    else:
        flags = tmp_path / "flags"
        flags.write_text("+DisableAttachMechanism\n")
        os.chmod(tmp_path, 0o755)
        opts = [f"-XX:Flags={flags}"]
    cfg = {"jvm": [{"name": "noattach", "match": r"\bWorkload\b.*attach-fail-test", "attach": True,
                    "attach_timeout": 1.5, "attach_interval": 0}]}
    with running_jvm(jvm_classes, "Workload", args=["attach-fail-test"], jvm_opts=opts) as jvm, \
            ExitStack() as stack:
        if where.endswith("stale-socket"):
            stack.enter_context(stale_attach_socket(jvm.pid))
        url, _ = stack.enter_context(running_exporter(cfg))
        for i in range(3):
            ss = samples(scrape(url, timeout_header=5))
            assert one(ss, "sparkwatch_target_up", kind="jvm", target="noattach") == 1
            assert one(ss, "sparkwatch_target_scrape_errors_total", target="noattach", reason="partial") == i + 1
            assert one(ss, "jvm_threads_live", process="noattach") > 0
            assert not find(ss, "jvm_codecache_used_bytes", process="noattach")
            assert not find(ss, "jvm_jit_compilation_enabled", process="noattach")
            assert one(ss, "sparkwatch_target_scrape_duration_seconds", target="noattach") < 4.5
        assert jvm.proc.poll() is None
        assert "done" in jvm.command("counts")
        dumps = sum(1 for line in jvm.output if line.startswith("Full thread dump"))
        assert dumps == (0 if where == "command-line" else 1)


@contextmanager
def stale_attach_socket(pid: int) -> Iterator[str]:
    """What an exited JVM that had this pid leaves: ``/tmp/.java_pid<pid>``, a
    socket nobody listens on (connecting is refused)."""
    path = f"/tmp/.java_pid{pid}"
    assert not os.path.exists(path)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.bind(path)
    try:
        with pytest.raises(ConnectionRefusedError), socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
            c.connect(path)
        yield path
    finally:
        os.unlink(path)


@requires_java
def test_attach_gets_past_a_stale_socket_at_the_first_scrape(jvm_classes):
    """A stale /tmp/.java_pid<pid> refuses the connection; the signalled JVM
    replaces it with its own listener's socket, and the first scrape uses that."""
    cfg = {"jvm": [{"name": "stale", "match": r"\bWorkload\b.*stale-socket-test", "attach": True}]}
    with running_jvm(jvm_classes, "Workload", args=["stale-socket-test"]) as jvm, stale_attach_socket(jvm.pid), \
            running_exporter(cfg) as (url, _):
        ss = samples(scrape(url))
        assert one(ss, "jvm_jit_compilation_enabled", process="stale") == 1
        assert not find(ss, "sparkwatch_target_scrape_errors_total", target="stale")
        assert jvm.proc.poll() is None


@requires_java
def test_attach_to_jvm_with_reduced_signals(jvm_classes):
    """-Xrs: HotSpot opens the attach socket at start-up (it will not take
    SIGQUIT); we connect without signalling, and the JVM survives."""
    cfg = {"jvm": [{"name": "xrs", "match": r"\bWorkload\b.*xrs-test", "attach": True}]}
    with running_jvm(jvm_classes, "Workload", args=["xrs-test"], jvm_opts=["-Xrs"]) as jvm, \
            running_exporter(cfg) as (url, _):
        ss = samples(scrape(url))
        assert one(ss, "jvm_jit_compilation_enabled", process="xrs") == 1
        assert jvm.proc.poll() is None
        assert "done" in jvm.command("counts")


@pytest.mark.parametrize("age,seen", [(3600, False), (0, True)], ids=["stale", "fresh"])
def test_perf_file_older_than_its_process_is_stale(age, seen):
    """A JVM killed with SIGKILL leaves its file; when the pid is reused by a
    process of the same user, the file's JVM started before that process. (The
    process here maps the file, as a JVM does: one that does not is skipped
    before its file's times are even looked at.)"""
    import time
    import uuid

    from testbed.hsperf_garbage import file_holder
    from tests.test_perfdata import build

    token = f"swstale{uuid.uuid4().hex[:8]}"
    begin = int((time.time() - age) * 1000)
    data = build([("sun.rt.createVmBeginTime", begin, "none", 1),
                  ("sun.rt.javaCommand", "org.example.Gone", "string", 1),
                  ("java.threads.live", 3, "none", 3)])
    cfg = {"jvm": [{"name": "stale", "match": token}]}
    with file_holder(data, token, maps=True), running_exporter(cfg) as (url, _):
        ss = samples(scrape(url))
    assert one(ss, "sparkwatch_target_up", kind="jvm", target="stale") == 1
    assert not find(ss, "sparkwatch_target_scrape_errors_total", target="stale")
    assert one(ss, "jvm_processes", target="stale") == (1 if seen else 0)
    assert len(find(ss, "jvm_threads_live", process="stale")) == (1 if seen else 0)


@requires_java
def test_jvm_in_a_user_namespace_rootless_container(jvm_classes):
    """A JVM in its own user namespace (root inside = a plain user outside), with a
    private /tmp: host root is nobody there, so the JVM refuses an attach from the
    exporter process itself; the attach goes through a child process that enters
    the namespace as the JVM's user."""
    import shutil
    import tempfile
    import time

    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare")
    classes = tempfile.mkdtemp(prefix="swjvm-userns-", dir="/var/tmp")
    for f in os.listdir(jvm_classes):
        shutil.copy(os.path.join(jvm_classes, f), classes)
    os.chmod(classes, 0o755)
    with os_user() as user:
        pw = pwd.getpwnam(user)
        script = f"mount -t tmpfs tmpfs /tmp && exec {shutil.which('java')} -Xmx128m -cp {classes} Workload userns-test"
        proc = subprocess.Popen(["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--clear-groups",
                                 "unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True, cwd="/")
        try:
            line = proc.stdout.readline()
            if not line.startswith("ready"):
                pytest.skip(f"cannot start a JVM in a user namespace here: {line.strip()}")
            pid = int(line.split("pid=")[1])
            assert open(f"/proc/{pid}/uid_map").read().split() == ["0", str(pw.pw_uid), "1"]
            # the exporter process itself is refused (and must not have changed anything)
            with pytest.raises(hs_attach.AttachError):
                hs_attach._jcmd_here(pid, pid, "Compiler.codecache", time.monotonic() + 1.0, True,
                                     hs_attach._status(pid, "/proc"), "/proc")
            cfg = {"jvm": [{"name": "userns", "match": r"Workload userns-test", "attach": True}]}
            with running_exporter(cfg) as (url, _):
                ss = samples(scrape(url))
            assert one(ss, "jvm_processes", target="userns") == 1
            assert not find(ss, "sparkwatch_target_scrape_errors_total", target="userns")
            assert find(ss, "jvm_info", process="userns")[0][1]["user"] == user
            assert one(ss, "jvm_jit_compilation_enabled", process="userns") == 1
            assert len(find(ss, "jvm_codecache_used_bytes", process="userns")) == 3
            assert os.geteuid() == 0 and os.getegid() == 0
        finally:
            stop_process_group(proc, grace=0)
            shutil.rmtree(classes, ignore_errors=True)


@requires_java
def test_attach_without_the_right_to_signal_is_an_auth_partial_error_not_internal(jvm_classes):
    """Root without CAP_KILL (a container that drops it) cannot SIGQUIT another user's JVM
    to start its attach listener: that JVM's attach is a partial error (logged as a
    permission problem), its perf-data metrics are still read, nothing is 'internal'."""
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv")
    with os_user() as user:
        with running_jvm(jvm_classes, "Workload", args=["nokill-test"], user=user) as jvm:
            code = (
                "from sparkwatch.collector import MetricSet, ScrapeContext\n"
                "from sparkwatch.collectors.jvm import JvmCollector, JvmTarget\n"
                "c = JvmCollector(JvmTarget(name='w', match=r'Workload nokill-test', attach=True, attach_interval=0))\n"
                "out = MetricSet(); c.collect(out, ScrapeContext.within(20))\n"
                "names = {d.name for d in out.samples}\n"
                "print(sorted(set(out.errors)), 'jvm_threads_live' in names, 'jvm_codecache_used_bytes' in names)\n"
            )
            p = subprocess.run(["setpriv", "--bounding-set=-kill", "--inh-caps=-all", "--",
                                sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                               cwd=str(Path(__file__).resolve().parent.parent))
            assert p.returncode == 0, p.stderr
            assert p.stdout.split() == ["['partial']", "True", "False"], p.stdout + p.stderr
            assert "no permission to signal" in p.stderr
