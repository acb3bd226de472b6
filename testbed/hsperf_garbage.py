"""What any local user can leave in /tmp for the jvm collector: perf-data files
that are not HotSpot's, named after live processes of that user that are not
JVMs (``sleep`` processes). For the jvm collector's hostile-input test and
``benchmarks/bench_perfdata.py``.

Each kind of file, and what the collector must make of it
(``jvm_perfdata_files_skipped_total{reason}``):

============== ============================================================ ===========
kind           the file                                                     skipped as
============== ============================================================ ===========
random         random bytes (1 byte to 64 KiB)                              not_hotspot
bad_version    HotSpot's magic, then version 3.0                            not_hotspot
bad_body       a real file's prologue, then random bytes                    not_hotspot
truncated      a real file cut short (its prologue says more is used)       not_hotspot
too_large      a real file followed by 15 MiB of zeros (sparse)             not_hotspot
fifo           a named pipe (nobody writes to it)                           not_hotspot
symlink        a symbolic link to a real file                               not_hotspot
empty          no bytes (a JVM between creating and sizing its file)        not_ready
zeros          32 KiB of zeros (a JVM that has not written its prologue)    not_ready
not_accessible a real file with ``accessible`` cleared                      not_ready
copy           a byte-for-byte copy of a real JVM's file (valid)            not_mapped
============== ============================================================ ===========
"""

from __future__ import annotations

import os
import pwd
import random
import shutil
import subprocess
from contextlib import contextmanager
from typing import Dict, Iterator, List, Sequence

from .procs import stop_process_group

#: kind -> the reason the collector must give for skipping it
EXPECTED = {
    "random": "not_hotspot", "bad_version": "not_hotspot", "bad_body": "not_hotspot",
    "truncated": "not_hotspot", "too_large": "not_hotspot", "fifo": "not_hotspot", "symlink": "not_hotspot",
    "empty": "not_ready", "zeros": "not_ready", "not_accessible": "not_ready",
    "copy": "not_mapped",
}
KINDS = tuple(EXPECTED)


def content(kind: str, real: bytes, rng: random.Random) -> bytes:
    """The bytes of a file of ``kind`` (not for fifo, symlink and too_large), ``real``
    being a real JVM's perf-data file."""
    if kind == "random":
        return rng.randbytes(rng.randint(1, 65536))
    if kind == "bad_version":
        return real[:5] + bytes([3, 0]) + real[7:]
    if kind == "bad_body":
        return real[:32] + rng.randbytes(len(real) - 32)
    if kind == "truncated":
        return real[:rng.randint(32, 1024)]
    if kind == "empty":
        return b""
    if kind == "zeros":
        return bytes(32768)
    if kind == "not_accessible":
        return real[:7] + b"\0" + real[8:]
    if kind == "copy":
        return real
    raise ValueError(kind)


def write(path: str, kind: str, real: bytes, real_path: str, uid: int, gid: int, rng: random.Random) -> None:
    """One garbage file of ``kind`` at ``path``, owned by ``uid``:``gid``."""
    if kind == "fifo":
        os.mkfifo(path, 0o600)
    elif kind == "symlink":
        os.symlink(real_path, path)
    elif kind == "too_large":
        with open(path, "wb") as f:
            f.write(real)
            f.truncate(16 * 1024 * 1024)
    else:
        with open(path, "wb") as f:
            f.write(content(kind, real, rng))
    os.chown(path, uid, gid, follow_symlinks=False)


@contextmanager
def sleepers(user: str, n: int, argv0: str = "java") -> Iterator[List[subprocess.Popen]]:
    """``n`` ``sleep`` processes of ``user``, each named ``argv0`` (what ``ps`` shows:
    an attacker's processes may look like JVMs); killed at the end."""
    pw = pwd.getpwnam(user)
    sleep = shutil.which("sleep")
    procs: List[subprocess.Popen] = []
    try:
        for _ in range(n):
            procs.append(subprocess.Popen([argv0, "3600"], executable=sleep, user=pw.pw_uid, group=pw.pw_gid,
                                          extra_groups=[], cwd="/", stdin=subprocess.DEVNULL,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                          start_new_session=True))
        yield procs
    finally:
        for p in procs:
            stop_process_group(p, grace=0)


@contextmanager
def garbage_dir(user: str, pids: Sequence[int], kinds: Sequence[str], real_path: str,
                seed: int = 8) -> Iterator[Dict[int, str]]:
    """``/tmp/hsperfdata_<user>/<pid>`` for every pid, of the kinds taken in turn,
    owned by ``user`` (the directory too, as HotSpot makes it). ``real_path``: a
    real JVM's file, copied and mangled. Yields {pid: kind}; removes the
    directory at the end."""
    pw = pwd.getpwnam(user)
    d = f"/tmp/hsperfdata_{user}"
    os.makedirs(d, mode=0o755, exist_ok=True)
    os.chown(d, pw.pw_uid, pw.pw_gid)
    with open(real_path, "rb") as f:
        real = f.read()
    rng = random.Random(seed)
    made = {}
    try:
        for i, pid in enumerate(pids):
            kind = kinds[i % len(kinds)]
            write(f"{d}/{pid}", kind, real, real_path, pw.pw_uid, pw.pw_gid, rng)
            made[pid] = kind
        yield made
    finally:
        shutil.rmtree(d, ignore_errors=True)


def expected_counts(made: Dict[int, str]) -> Dict[str, int]:
    """reason -> how many files of ``made`` the collector must skip for it."""
    out: Dict[str, int] = {}
    for kind in made.values():
        out[EXPECTED[kind]] = out.get(EXPECTED[kind], 0) + 1
    return out


_HOLDER = """
import mmap, os, sys, time
path = f"{sys.argv[1]}/{os.getpid()}"
sys.stdin.readline()  # the file is there
if sys.argv[2] == "maps":
    f = open(path, "rb")
    m = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
print("ready", flush=True)
time.sleep(3600)
"""


@contextmanager
def file_holder(data: bytes, token: str, maps: bool) -> Iterator[subprocess.Popen]:
    """A Python process (its command line carries ``token``) with ``data`` as its
    perf-data file in a directory of its own: mapped (as a JVM maps its file)
    when ``maps``, else only lying there. Yields the process; kills it and removes
    the directory at the end."""
    import sys
    import tempfile

    d = tempfile.mkdtemp(prefix="hsperfdata_swholder", dir="/tmp")
    p = subprocess.Popen([sys.executable, "-c", _HOLDER, d, "maps" if maps else "lies", token],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        with open(f"{d}/{p.pid}", "wb") as f:
            f.write(data)
        p.stdin.write("go\n")
        p.stdin.flush()
        assert p.stdout.readline().strip() == "ready"
        yield p
    finally:
        stop_process_group(p, grace=0)
        p.stdin.close()
        p.stdout.close()
        shutil.rmtree(d, ignore_errors=True)


@contextmanager
def proc_lookalike_dir(user: str) -> Iterator[str]:
    """``/tmp/hsperfdata_<user>proc``, a symbolic link to /proc, owned by ``user``:
    listed naively, every process of the host seems to have a perf-data file."""
    pw = pwd.getpwnam(user)
    link = f"/tmp/hsperfdata_{user}proc"
    os.symlink("/proc", link)
    os.chown(link, pw.pw_uid, pw.pw_gid, follow_symlinks=False)
    try:
        yield link
    finally:
        os.unlink(link)
