"""The hsperfdata parser: against real JVM files and jcmd, and fuzzed."""

from __future__ import annotations

import os
import struct
import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sparkwatch.hotspot import perfdata
from sparkwatch.hotspot.perfdata import PerfDataError, parse, read_file
from testbed.jvm import perf_counters, running_jvm
from tests.helpers import requires_java

UNIT_CODES = {v: k for k, v in perfdata.UNITS.items()}


def build(entries, order="<", accessible=1, major=2, minor=0, pad_to=None, num_entries=None, extra_alloc=0):
    """A perf-data region as HotSpot lays it out (perfData.cpp create_entry).

    entries: (name, value, units, variability) with int values (longs) or str (strings).
    """
    body = b""
    offset = perfdata.PROLOGUE_SIZE
    for name, value, units, var in entries:
        nb = name.encode() + b"\0"
        if isinstance(value, int):
            dsize, data, vlen, dtype = 8, struct.pack(order + "q", value), 0, ord("J")
        else:
            raw = value.encode()
            data = raw + b"\0"
            dsize, vlen, dtype = 1, len(data), ord("B")
        size = perfdata.ENTRY_HEADER_SIZE + len(nb)
        pad = 0 if size % dsize == 0 else dsize - size % dsize
        size += pad
        data_start = size
        size += len(data)
        size = (size + 7) & ~7
        entry = struct.pack(order + "iiiBBBBi", size, perfdata.ENTRY_HEADER_SIZE, vlen, dtype, 1,
                            UNIT_CODES[units], var, data_start)
        entry += nb + b"\0" * pad + data
        entry += b"\0" * (size - len(entry))
        body += entry
        offset += size
    body += b"\0" * extra_alloc
    used = perfdata.PROLOGUE_SIZE + len(body)
    n = len(entries) + (1 if extra_alloc else 0) if num_entries is None else num_entries
    prologue = perfdata.MAGIC + bytes([0 if order == ">" else 1, major, minor, accessible])
    prologue += struct.pack(order + "iiqii", used, 0, 12345, perfdata.PROLOGUE_SIZE, n)
    buf = prologue + body
    if pad_to:
        buf += b"\0" * (pad_to - len(buf))
    return buf


SAMPLE = [
    ("sun.os.hrt.frequency", 1_000_000_000, "hertz", 1),
    ("java.cls.loadedClasses", 1234, "events", 2),
    ("sun.gc.collector.0.name", "G1 young collection pauses", "string", 1),
    ("sun.gc.collector.0.time", 2_500_000_000, "ticks", 2),
    ("java.threads.live", 17, "none", 3),
]


@pytest.mark.parametrize("order", ["<", ">"])
def test_both_byte_orders(order):
    pd = parse(build(SAMPLE, order=order, pad_to=32768))
    assert pd.byte_order == ("little" if order == "<" else "big")
    assert pd.values["java.cls.loadedClasses"] == 1234
    assert pd.values["sun.gc.collector.0.name"] == "G1 young collection pauses"
    assert pd.seconds("sun.gc.collector.0.time") == 2.5
    assert pd.units["sun.gc.collector.0.time"] == "ticks"


def test_other_version_is_an_error():
    with pytest.raises(PerfDataError, match="version"):
        parse(build(SAMPLE, major=1))
    with pytest.raises(PerfDataError, match="magic"):
        parse(b"\1" * 64)


def test_not_accessible_is_an_error():
    with pytest.raises(PerfDataError, match="accessible"):
        parse(build(SAMPLE, accessible=0))


def test_truncated_is_an_error():
    buf = build(SAMPLE)
    for cut in range(0, len(buf)):
        with pytest.raises(PerfDataError):
            parse(buf[:cut])


def test_entry_being_written_is_an_error_and_read_file_retries(tmp_path):
    # HotSpot bumps used and num_entries before it writes the entry: a reader
    # can see an allocated, still empty entry.
    partial = build(SAMPLE, extra_alloc=64)
    with pytest.raises(PerfDataError, match="incomplete"):
        parse(partial)
    path = tmp_path / "4242"
    path.write_bytes(partial)
    with pytest.raises(PerfDataError):
        read_file(str(path), attempts=2, retry_delay=0.001)
    complete = build(SAMPLE + [("sun.rt.late", 7, "none", 1)], pad_to=len(partial))

    def finish():
        time.sleep(0.05)
        with open(path, "r+b") as f:  # in place, as the JVM writes its mapped file
            f.write(complete)

    t = threading.Thread(target=finish)
    t.start()
    try:
        pd = read_file(str(path), attempts=1000, retry_delay=0.01)
    finally:
        t.join()
    assert pd.values["sun.rt.late"] == 7


def _with_prologue(buf, **fields):
    """``buf`` with prologue fields replaced (little-endian)."""
    b = bytearray(buf)
    offsets = {"byte_order": (4, "B"), "major": (5, "B"), "minor": (6, "B"), "accessible": (7, "B"),
               "used": (8, "<i"), "entry_offset": (24, "<i"), "num_entries": (28, "<i")}
    for k, v in fields.items():
        off, fmt = offsets[k]
        struct.pack_into(fmt, b, off, v)
    return bytes(b)


def _last_entry_half_written():
    """The JVM has set the last entry's length but not yet its offsets."""
    buf = bytearray(build(SAMPLE))
    pos = perfdata.PROLOGUE_SIZE
    for _ in range(len(SAMPLE) - 1):
        pos += struct.unpack_from("<i", buf, pos)[0]
    struct.pack_into("<ii", buf, pos + 4, 0, 0)  # name_offset, vector_length
    struct.pack_into("<i", buf, pos + 16, 0)  # data_offset
    return bytes(buf)


def _first_entry_garbage():
    buf = bytearray(build(SAMPLE))
    struct.pack_into("<ii", buf, perfdata.PROLOGUE_SIZE + 4, 0, 0)
    return bytes(buf)


GOOD = build(SAMPLE, pad_to=4096)
NOT_HOTSPOT = {
    "text": b"#!/bin/sh\necho not a perf-data file\n" * 10,
    "bad magic": b"\xca\xfe\xba\xbe" + GOOD[4:],
    "zero magic, rest not": bytes(4) + GOOD[4:],
    "byte order 7": _with_prologue(GOOD, byte_order=7),
    "version 1.0": _with_prologue(GOOD, major=1),
    "version 3.0": _with_prologue(GOOD, major=3),
    "version 2.1": _with_prologue(GOOD, minor=1),
    "used past the end": _with_prologue(GOOD, used=len(GOOD) + 1),
    "negative used": _with_prologue(GOOD, used=-5),
    "entry offset inside the prologue": _with_prologue(GOOD, entry_offset=8),
    "entry offset misaligned": _with_prologue(GOOD, entry_offset=34),
    "negative entries": _with_prologue(GOOD, num_entries=-1),
    "more entries than bytes": _with_prologue(GOOD, num_entries=1 << 30),
    "short, not zeros": GOOD[:20],
    "first of several entries garbage": _first_entry_garbage(),
}
NOT_READY = {
    "empty": b"",
    "short zeros": bytes(20),
    "all zeros": bytes(32768),
    "not accessible": build(SAMPLE, accessible=0),
    "entry allocated, not written": build(SAMPLE, extra_alloc=64),
    "last entry half written": _last_entry_half_written(),
}


@pytest.mark.parametrize("name", NOT_HOTSPOT)
def test_not_hotspot(name):
    with pytest.raises(perfdata.NotHotSpot):
        parse(NOT_HOTSPOT[name])


@pytest.mark.parametrize("name", NOT_READY)
def test_not_ready(name):
    with pytest.raises(perfdata.NotReady):
        parse(NOT_READY[name])


def test_read_file_retries_only_what_may_be_a_jvm_writing(tmp_path, monkeypatch):
    """Garbage is given up at the first read, without sleeping; a file that may be
    a JVM's being initialised or written is re-read."""
    sleeps = []
    monkeypatch.setattr(perfdata.time, "sleep", lambda s: sleeps.append(s))
    path = tmp_path / "4242"
    for name, data in NOT_HOTSPOT.items():
        path.write_bytes(data)
        with pytest.raises(perfdata.NotHotSpot):
            read_file(str(path), attempts=5, retry_delay=0.5)
        assert sleeps == [], name
    for name, data in NOT_READY.items():
        path.write_bytes(data)
        with pytest.raises(perfdata.NotReady):
            read_file(str(path), attempts=3, retry_delay=0.5)
        assert sleeps == [0.5, 0.5], name
        sleeps.clear()


def test_read_file_reads_the_prologue_then_only_the_used_bytes(tmp_path, monkeypatch):
    """A file of 2 MiB is read up to what its prologue says is used; a garbage
    prologue stops the read at 32 bytes; a file larger than HotSpot ever makes
    one (PerfDataMemorySize is at most 2 MiB) is not read at all."""
    asked = []
    real_read = os.read

    def counting_read(fd, n):
        asked.append(n)
        return real_read(fd, n)

    path = tmp_path / "4242"
    good = build(SAMPLE, pad_to=2 * 1024 * 1024)
    path.write_bytes(good)
    monkeypatch.setattr(os, "read", counting_read)
    assert read_file(str(path)).values["java.threads.live"] == 17
    used = struct.unpack_from("<i", good, 8)[0]
    assert sum(asked) == used < 4096
    asked.clear()
    path.write_bytes(b"\x7fELF" + bytes(2 * 1024 * 1024 - 4))
    with pytest.raises(perfdata.NotHotSpot, match="magic"):
        read_file(str(path))
    assert sum(asked) <= perfdata.PROLOGUE_SIZE
    asked.clear()
    with open(path, "wb") as f:
        f.write(good)
        f.truncate(perfdata.MAX_FILE_SIZE + 1)
    with pytest.raises(perfdata.NotHotSpot, match="large"):
        read_file(str(path))
    assert asked == []


def test_what_is_not_a_regular_file_is_not_hotspot(tmp_path):
    os.mkfifo(tmp_path / "1")  # nobody writes: a blocking read would hang
    with pytest.raises(perfdata.NotHotSpot, match="regular"):
        read_file(str(tmp_path / "1"))
    (tmp_path / "real").write_bytes(GOOD)
    os.symlink(tmp_path / "real", tmp_path / "2")
    with pytest.raises(perfdata.NotHotSpot, match="link"):
        read_file(str(tmp_path / "2"))



def test_what_is_not_a_regular_file_is_never_opened(tmp_path):
    """Whoever owns the directory (root in a container has CAP_MKNOD) may put a device
    node or a named pipe where a perf-data file is expected: opening one for reading
    runs its driver (a watchdog device starts counting down to a reboot when opened and
    closed) or wakes whoever waits for a reader. It is looked at without being opened.
    A writer blocked opening a FIFO is the witness: any open for reading releases it."""
    import threading

    fifo = tmp_path / "1"
    os.mkfifo(fifo)
    opened = threading.Event()

    def writer():
        fd = os.open(fifo, os.O_WRONLY)  # blocks until someone opens the FIFO for reading
        opened.set()
        os.close(fd)

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    try:
        with pytest.raises(perfdata.NotHotSpot, match="regular"):
            read_file(str(fifo))
        assert not opened.wait(0.5)
    finally:
        os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))  # release the writer
        t.join(5)


entry_st = st.tuples(
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz.0123456789", min_size=1, max_size=40),
    st.one_of(st.integers(min_value=-(2 ** 63), max_value=2 ** 63 - 1),
              st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=200)),
    st.integers(min_value=1, max_value=3),
)


@given(st.lists(entry_st, max_size=30, unique_by=lambda e: e[0]), st.sampled_from(["<", ">"]))
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_round_trip(entries, order):
    full = [(n, v, "string" if isinstance(v, str) else "events", var) for n, v, var in entries]
    pd = parse(build(full, order=order))
    assert pd.values == {n: v for n, v, _, _ in full}


@given(st.binary(max_size=4096))
@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_random_bytes_never_raise_anything_else(data):
    try:
        parse(data)
    except PerfDataError:
        pass
    try:
        parse(perfdata.MAGIC + b"\x01\x02\x00\x01" + data)
    except PerfDataError:
        pass


@given(st.data())
@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_mutations_never_raise_anything_else(data):
    base = bytearray(build(SAMPLE, order=data.draw(st.sampled_from(["<", ">"])), pad_to=1024))
    for _ in range(data.draw(st.integers(min_value=1, max_value=8))):
        i = data.draw(st.integers(min_value=0, max_value=len(base) - 1))
        base[i] = data.draw(st.integers(min_value=0, max_value=255))
    cut = data.draw(st.integers(min_value=0, max_value=len(base)))
    try:
        pd = parse(bytes(base[:cut]))
    except PerfDataError:
        return
    for k, v in pd.values.items():
        assert isinstance(k, str) and isinstance(v, (int, str))


# ---------------------------------------------------------------- real JVMs


@requires_java
def test_real_file_matches_jcmd(jvm_classes):
    with running_jvm(jvm_classes, "Workload") as jvm:
        jvm.command("classes 50")  # then the JVM is idle
        path = f"/tmp/hsperfdata_root/{jvm.pid}"
        pd = read_file(path)
        expected = perf_counters(jvm.pid)
        pd2 = read_file(path)
        assert pd.byte_order == "little" and pd.major_version == 2
        # jcmd also prints the prologue as pseudo counters (sun.perfdata.*)
        real = {k: v for k, v in expected.items() if not k.startswith("sun.perfdata.")}
        assert set(pd2.values) == set(real)
        for name, value in pd.values.items():
            if pd2.values[name] != value:
                continue  # changed while jcmd attached (e.g. sun.ci.lastMethod)
            if isinstance(value, str):
                assert value == real[name], name
            elif pd2.values[name] == value and "Time" not in name and "time" not in name \
                    and not name.startswith("sun.os.hrt") and "ticks" != pd.units[name]:
                # counters that did not move between our two reads must equal jcmd's
                assert str(value) == real[name], name
        for name in ("java.cls.loadedClasses", "java.cls.sharedLoadedClasses", "java.cls.unloadedClasses",
                     "java.threads.live", "java.threads.started", "sun.os.hrt.frequency"):
            assert str(pd2.values[name]) == real[name], name

        # the same region in the other byte order parses to the same values
        entries = []
        for name, value in pd.values.items():
            entries.append((name, value, pd.units[name], 1))
        big = parse(build(entries, order=">"))
        assert big.values == pd.values


@pytest.fixture(scope="session")
def real_perf_file(jvm_classes):
    with running_jvm(jvm_classes, "Workload", args=["perf-fuzz"]) as jvm:
        with open(f"/tmp/hsperfdata_root/{jvm.pid}", "rb") as f:
            return f.read()


@requires_java
@given(st.data())
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
def test_mutated_real_file_never_raises_anything_else(real_perf_file, data):
    buf = bytearray(real_perf_file)
    used = struct.unpack_from("<i", buf, 8)[0]
    for _ in range(data.draw(st.integers(min_value=1, max_value=6))):
        i = data.draw(st.integers(min_value=0, max_value=used - 1))
        buf[i] = data.draw(st.integers(min_value=0, max_value=255))
    cut = data.draw(st.sampled_from([len(buf), used, data.draw(st.integers(0, len(buf)))]))
    try:
        pd = parse(bytes(buf[:cut]))
    except PerfDataError:
        return
    assert all(isinstance(v, (int, str)) for v in pd.values.values())
