"""procstats and attach details that need no JVM."""

from __future__ import annotations

import os
import subprocess

import pytest

from sparkwatch import procstats, tcptables
from sparkwatch.hotspot import attach as hs_attach
from testbed.procs import stop_process_group

LIMITS = """Limit                     Soft Limit           Hard Limit           Units     
Max cpu time              unlimited            unlimited            seconds   
Max processes             4096                 8192                 processes 
Max open files            1024                 unlimited            files     
"""


def test_parse_limits_leaves_unlimited_out():
    got = procstats.parse_limits(LIMITS)
    assert got["Max processes"] == (4096, 8192)
    assert got["Max open files"] == (1024, None)
    assert got["Max cpu time"] == (None, None)


def test_nproc_not_enforced_for_root_or_capabilities():
    assert not procstats.nproc_enforced({"Uid": "0 0 0 0", "CapEff": "0"})
    assert procstats.nproc_enforced({"Uid": "1000 1000 1000 1000", "CapEff": "0000000000000000"})
    assert not procstats.nproc_enforced({"Uid": "1000 1000 1000 1000", "CapEff": f"{1 << 24:016x}"})
    assert not procstats.nproc_enforced({"Uid": "1000 1000 1000 1000", "CapEff": f"{1 << 21:016x}"})


def test_effective_limit_and_headroom():
    s = procstats.ProcessStats(nproc_limit=100, nproc_enforced=True, user_threads=90, cgroup_pids=10,
                               cgroup_pids_max=50, host_threads=1000, host_threads_max=100000)
    assert s.thread_limit == 50
    assert s.thread_headroom == 10  # RLIMIT_NPROC: 100 - 90 is tighter than pids 50 - 10
    s.nproc_enforced = False
    assert s.thread_limit == 50 and s.thread_headroom == 40
    assert procstats.ProcessStats().thread_limit is None


def test_cgroup_v2_tightest_ancestor(tmp_path, monkeypatch):
    """cgroup v2: the process sits in a/b/c; b has the tightest pids.max."""
    proc = tmp_path / "proc"
    (proc / "4242").mkdir(parents=True)
    (proc / "4242" / "cgroup").write_text("0::/a/b/c\n")
    cg = tmp_path / "cgroup"
    for path, cur, mx in (("", None, None), ("a", "30", "1000"), ("a/b", "25", "40"), ("a/b/c", "5", "max")):
        d = cg / path
        d.mkdir(parents=True, exist_ok=True)
        if cur:
            (d / "pids.current").write_text(cur + "\n")
            (d / "pids.max").write_text(mx + "\n")
    monkeypatch.setattr(procstats, "_MOUNTS", (str(cg), None))
    assert procstats.cgroup_pids(4242, str(proc)) == (25, 40)
    (cg / "a" / "b" / "pids.max").write_text("max\n")
    assert procstats.cgroup_pids(4242, str(proc)) == (30, 1000)
    (cg / "a" / "pids.max").write_text("max\n")
    assert procstats.cgroup_pids(4242, str(proc)) == (5, None)


def test_cgroup_v1_pids(tmp_path, monkeypatch):
    proc = tmp_path / "proc"
    (proc / "7").mkdir(parents=True)
    (proc / "7" / "cgroup").write_text("9:name=systemd:/\n8:pids:/svc\n4:memory:/x\n0::/\n")
    v1 = tmp_path / "pids"
    (v1 / "svc").mkdir(parents=True)
    (v1 / "svc" / "pids.current").write_text("12\n")
    (v1 / "svc" / "pids.max").write_text("64\n")
    monkeypatch.setattr(procstats, "_MOUNTS", (str(tmp_path / "unified"), str(v1)))
    assert procstats.cgroup_pids(7, str(proc)) == (12, 64)


def test_host_snapshot_counts_threads_by_real_user():
    snap = procstats.host_snapshot()
    me = snap.procs[os.getpid()]
    assert me.ruid == os.getuid()
    assert snap.threads_by_uid[os.getuid()] >= me.threads >= 1
    assert procstats.threads_max() > 0 and procstats.host_threads() > 0


def test_tcp_states_of_a_process():
    import socket

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    cli = socket.create_connection(srv.getsockname())
    conn, _ = srv.accept()
    try:
        got = tcptables.tcp_states(os.getpid())
        assert got["listen"] >= 1 and got["established"] >= 2
    finally:
        for s in (cli, conn, srv):
            s.close()


def test_attach_never_signals_a_process_that_does_not_catch_sigquit():
    """SIGQUIT's default action is to dump core and die: we must not send it."""
    p = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        with pytest.raises(hs_attach.AttachError, match="SIGQUIT"):
            hs_attach.jcmd(p.pid, "Compiler.codecache", timeout=2)
        assert p.poll() is None
        assert not os.path.exists(f"/proc/{p.pid}/cwd/.attach_pid{p.pid}")
    finally:
        stop_process_group(p, grace=0)


def test_attach_to_a_gone_process():
    p = subprocess.Popen(["true"])
    p.wait()
    with pytest.raises(hs_attach.AttachError):
        hs_attach.jcmd(p.pid, "Compiler.codecache", timeout=1)


CODECACHE_SINGLE = """CodeCache: size=3072Kb used=3071Kb max_used=3071Kb free=0Kb
 bounds [0x00007f9d718da000, 0x00007f9d71bda000, 0x00007f9d71bda000]
 total_blobs=2278 nmethods=1870 adapters=320
 compilation: disabled (not enough contiguous free space left)
              stopped_count=0, restarted_count=0
 full_count=1
"""


def test_parse_codecache():
    cc = hs_attach.parse_codecache(CODECACHE_SINGLE)
    assert cc.heaps == {"CodeCache": {"size": 3072 * 1024, "used": 3071 * 1024, "max_used": 3071 * 1024,
                                      "free": 0}}
    assert cc.compilation_enabled is False and cc.full_count == 1
    with pytest.raises(ValueError):
        hs_attach.parse_codecache("garbage")


def test_netlink_and_proc_tcp_tables_agree():
    import socket

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    cli = socket.create_connection(srv.getsockname())
    conn, _ = srv.accept()
    cli.close()  # conn is now in CLOSE_WAIT
    try:
        mine = {os.fstat(s.fileno()).st_ino for s in (srv, conn)}
        via_netlink = tcptables.netlink_tcp_table(mine)
        via_proc = tcptables.proc_tcp_table(os.getpid(), mine)
        assert via_netlink == via_proc
        assert sorted(via_proc.values()) == ["close_wait", "listen"]
        assert tcptables.tcp_states(os.getpid())["close_wait"] == 1
    finally:
        conn.close()
        srv.close()


def test_process_label_from_main_class():
    from sparkwatch.collectors.jvm import flag, main_class, short_name

    assert short_name(main_class("org.apache.livy.server.LivyServer")) == "LivyServer"
    assert short_name(main_class("org.apache.spark.deploy.SparkSubmit --master yarn --class X app.jar")) == \
        "SparkSubmit"
    assert short_name("org.apache.spark.executor.YarnCoarseGrainedExecutorBackend") == \
        "YarnCoarseGrainedExecutorBackend"
    assert short_name(main_class("/opt/app/service-1.2.jar --port 1")) == "service-1.2"
    assert short_name("jdk.compiler/com.sun.tools.javac.Main") == "Main"
    assert short_name("") == "unknown"
    args = ["--driver-url", "x", "--executor-id", "12", "--app-id=app-1"]
    assert flag(args, "--executor-id") == "12" and flag(args, "--app-id") == "app-1"
    assert flag(args, "--hostname") == ""
