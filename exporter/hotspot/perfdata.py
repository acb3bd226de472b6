"""Pure-Python reader of HotSpot performance-data files (``/tmp/hsperfdata_<user>/<pid>``).

Every HotSpot JVM (unless started with ``-XX:-UsePerfData``) keeps its
jvmstat counters in a small memory-mapped file. The layout is defined in
HotSpot's ``perfMemory.hpp`` / ``perfData.cpp`` and read by the JDK's
``sun.jvmstat.perfdata.monitor.v2_0.PerfDataBuffer``; this module follows
that reader:

Prologue (32 bytes)::

    0  magic            u4  0xcafec0c0, always stored big-endian (CA FE C0 C0)
    4  byte_order       u1  0 = big endian, 1 = little endian (the rest of the file)
    5  major_version    u1  2
    6  minor_version    u1  0
    7  accessible       u1  non-zero once the JVM has finished initialising the region
    8  used             i4  bytes of the region in use (prologue included)
    12 overflow         i4  bytes that did not fit
    16 mod_time_stamp   i8  ticks of the last structural change
    24 entry_offset     i4  offset of the first entry
    28 num_entries      i4  number of entries

Entry (20-byte header, 4-byte aligned, ``entry_length`` includes name and data)::

    0  entry_length     i4
    4  name_offset      i4  relative to the entry; NUL-terminated name
    8  vector_length    i4  0 = scalar
    12 data_type        u1  'J' (long) scalars, 'B' (byte) vectors = strings
    13 flags            u1  0x01 = supported
    14 data_units       u1  1 none, 2 bytes, 3 ticks, 4 events, 5 string, 6 hertz
    15 data_variability u1  1 constant, 2 monotonic, 3 variable
    16 data_offset      i4  relative to the entry

The JVM allocates an entry (bumping ``used`` and ``num_entries``) before it
fills it in, so a reader can see a zero-length or half-written entry at the
end: :func:`read_file` re-reads the file a few times before it gives up.
Anything malformed raises :class:`PerfDataError`; nothing else escapes.
"""

from __future__ import annotations

import os
import struct
import time
from dataclasses import dataclass, field
from typing import Dict, Optional, Union

MAGIC = b"\xca\xfe\xc0\xc0"
PROLOGUE_SIZE = 32
ENTRY_HEADER_SIZE = 20
SUPPORTED_MAJOR = 2

UNITS = {1: "none", 2: "bytes", 3: "ticks", 4: "events", 5: "string", 6: "hertz"}
VARIABILITY = {1: "constant", 2: "monotonic", 3: "variable"}
TYPE_CODES = frozenset(b"BZJISCDFVL[")

#: files larger than this are not perf-data files (the JVM default is 64 KiB)
MAX_FILE_SIZE = 16 * 1024 * 1024

Value = Union[int, str]


class PerfDataError(Exception):
    """The file is not a readable perf-data file (truncated, corrupt, other version, not ready)."""


@dataclass
class PerfData:
    """The counters of one JVM at one moment."""

    major_version: int
    minor_version: int
    byte_order: str  # "big" | "little"
    accessible: bool
    used: int
    overflow: int
    mod_time_stamp: int
    num_entries: int
    values: Dict[str, Value] = field(default_factory=dict)
    units: Dict[str, str] = field(default_factory=dict)

    def get(self, name: str, default=None):
        return self.values.get(name, default)

    def int(self, name: str) -> Optional[int]:
        v = self.values.get(name)
        return v if isinstance(v, int) else None

    def str(self, name: str) -> Optional[str]:
        v = self.values.get(name)
        return v if isinstance(v, str) else None

    @property
    def tick_frequency(self) -> Optional[int]:
        """Ticks per second of the JVM's high-resolution clock (``sun.os.hrt.frequency``)."""
        f = self.int("sun.os.hrt.frequency")
        return f if f and f > 0 else None

    def seconds(self, name: str) -> Optional[float]:
        """A ``ticks`` counter converted to seconds, or None without a known frequency."""
        v = self.int(name)
        f = self.tick_frequency
        if v is None or f is None:
            return None
        return v / f


def parse(buf: bytes, require_accessible: bool = True) -> PerfData:
    """Parse a complete perf-data region. Raises :class:`PerfDataError`."""
    if len(buf) < PROLOGUE_SIZE:
        raise PerfDataError(f"truncated: {len(buf)} bytes, shorter than the prologue")
    if buf[:4] != MAGIC:
        raise PerfDataError(f"bad magic {buf[:4].hex()}")
    bo = buf[4]
    if bo == 0:
        e, order = ">", "big"
    elif bo == 1:
        e, order = "<", "little"
    else:
        raise PerfDataError(f"bad byte order {bo}")
    major, minor, accessible = buf[5], buf[6], buf[7]
    if major != SUPPORTED_MAJOR:
        raise PerfDataError(f"unsupported perf-data version {major}.{minor}")
    used, overflow, mod_ts, entry_offset, num_entries = struct.unpack_from(e + "iiqii", buf, 8)
    pd = PerfData(major, minor, order, accessible != 0, used, overflow, mod_ts, num_entries)
    if require_accessible and not accessible:
        raise PerfDataError("not accessible yet (the JVM is initialising or exiting)")
    if used < PROLOGUE_SIZE:
        if num_entries == 0:
            return pd  # freshly initialised, nothing allocated yet
        raise PerfDataError(f"bad used size {used}")
    if used > len(buf):
        raise PerfDataError(f"truncated: used={used} but only {len(buf)} bytes")
    if num_entries < 0 or entry_offset < PROLOGUE_SIZE or entry_offset % 4 or entry_offset > used:
        raise PerfDataError(f"bad entry table (offset {entry_offset}, {num_entries} entries)")
    limit = used
    pos = entry_offset
    count = 0
    hdr = struct.Struct(e + "iiiBBBBi")
    lng = struct.Struct(e + "q")
    while pos < limit:
        if pos % 4:
            raise PerfDataError(f"misaligned entry at {pos:#x}")
        if pos + ENTRY_HEADER_SIZE > limit:
            # a zero-length entry header may be cut off at the very end only if it is empty
            if any(buf[pos:limit]):
                raise PerfDataError(f"entry header at {pos:#x} extends past the used region")
            break
        length, name_off, vlen, dtype, flags, units, var, data_off = hdr.unpack_from(buf, pos)
        if length == 0:
            break  # allocated but not written yet: end of data
        if length < ENTRY_HEADER_SIZE or pos + length > limit:
            raise PerfDataError(f"bad entry length {length} at {pos:#x}")
        if not (ENTRY_HEADER_SIZE <= name_off < data_off <= length):
            raise PerfDataError(f"bad name/data offsets ({name_off}, {data_off}) at {pos:#x}")
        if dtype not in TYPE_CODES:
            raise PerfDataError(f"bad type code {dtype:#x} at {pos:#x}")
        if units not in UNITS or var not in VARIABILITY:
            raise PerfDataError(f"bad units/variability ({units}, {var}) at {pos:#x}")
        if vlen < 0:
            raise PerfDataError(f"bad vector length {vlen} at {pos:#x}")
        raw_name = buf[pos + name_off: pos + data_off]
        nul = raw_name.find(b"\0")
        if nul <= 0:
            raise PerfDataError(f"unterminated or empty name at {pos:#x}")
        name = raw_name[:nul].decode("ascii", "replace")
        dstart = pos + data_off
        value: Optional[Value] = None
        if vlen == 0:
            if dtype == ord("J"):
                if data_off + 8 > length:
                    raise PerfDataError(f"long value of {name} extends past its entry")
                value = lng.unpack_from(buf, dstart)[0]
        elif dtype == ord("B") and units == 5:
            if data_off + vlen > length:
                raise PerfDataError(f"string value of {name} extends past its entry")
            raw = buf[dstart: dstart + vlen]
            end = raw.find(b"\0")
            value = (raw if end < 0 else raw[:end]).decode("utf-8", "replace")
        # other types are not produced by current JVMs: skipped, like unknown counters
        if value is not None:
            pd.values[name] = value
            pd.units[name] = UNITS[units]
        count += 1
        pos += length
    if count < num_entries:
        raise PerfDataError(f"incomplete: {count} of {num_entries} entries readable (being written?)")
    return pd


def read_file(path: str, attempts: int = 3, retry_delay: float = 0.01,
              deadline_remaining=None) -> PerfData:
    """Read and parse ``path``, re-reading when the JVM is in the middle of a write.

    ``deadline_remaining``: optional callable giving the seconds left; no retry
    is started when less than the delay is left. Raises :class:`PerfDataError`
    or :class:`OSError` (file gone, no permission).
    """
    last: Optional[PerfDataError] = None
    for i in range(max(1, attempts)):
        if i:
            if deadline_remaining is not None and deadline_remaining() < retry_delay * 2:
                break
            time.sleep(retry_delay)
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
        try:
            st = os.fstat(fd)
            import stat as _stat

            if not _stat.S_ISREG(st.st_mode):
                raise PerfDataError("not a regular file")
            if st.st_size > MAX_FILE_SIZE:
                raise PerfDataError(f"too large for a perf-data file ({st.st_size} bytes)")
            chunks = []
            left = st.st_size
            while left > 0:
                b = os.read(fd, left)
                if not b:
                    break
                chunks.append(b)
                left -= len(b)
            buf = b"".join(chunks)
        finally:
            os.close(fd)
        try:
            return parse(buf)
        except PerfDataError as e:
            last = e
    assert last is not None
    raise last
