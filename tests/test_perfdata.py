"""The hsperfdata parser: against real JVM files and jcmd, and fuzzed."""

from __future__ import annotations

import os
import struct
import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter.hotspot import perfdata
from exporter.hotspot.perfdata import PerfDataError, parse, read_file
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
        parse(b"\0" * 64)


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
def test_real_file_matches_jcmd(jvm_classes):  # noqa: F811
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
def real_perf_file(jvm_classes):  # noqa: F811
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
