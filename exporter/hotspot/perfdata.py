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

Anything in ``/tmp/hsperfdata_*/`` may be there: any local user can put any
file in a directory of their own. A read is bounded whatever the file: the
prologue (32 bytes) is read and checked first, then only the ``used`` bytes it
announces, and never more than :data:`MAX_FILE_SIZE`. What cannot be parsed
raises one of the two kinds of :class:`PerfDataError`; nothing else escapes:

- :class:`NotReady`: what a JVM's own file looks like for a moment: empty or
  all zeros (created, prologue not yet written), ``accessible`` still 0, or
  its last entry allocated (``used`` and ``num_entries`` bumped) but not yet
  filled in. Worth reading again a little later (:func:`read_file` does, a
  few times; the jvm collector does it once for all such files of a scrape).
- :class:`NotHotSpot`: anything else (another magic, byte order or version, a
  prologue whose sizes do not fit the file, a broken entry before the last,
  not a regular file, larger than HotSpot makes one). A JVM never writes that:
  reading it again is pointless.
"""

from __future__ import annotations

import os
import stat
import struct
import time
from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple, Union

MAGIC = b"\xca\xfe\xc0\xc0"
PROLOGUE_SIZE = 32
ENTRY_HEADER_SIZE = 20
SUPPORTED_MAJOR = 2
#: the only minor version HotSpot has written since JDK 1.5, and the only one
#: the JDK's own reader (sun.jvmstat ... v2_0.PerfDataBufferPrologue) accepts
SUPPORTED_MINOR = 0

UNITS = {1: "none", 2: "bytes", 3: "ticks", 4: "events", 5: "string", 6: "hertz"}
VARIABILITY = {1: "constant", 2: "monotonic", 3: "variable"}
TYPE_CODES = frozenset(b"BZJISCDFVL[")

#: files larger than this are not perf-data files: the file is PerfDataMemorySize
#: (default 32 KiB; at most 2 MiB since JDK 9, which refuses anything larger)
#: rounded up to a page
MAX_FILE_SIZE = 2 * 1024 * 1024

Value = Union[int, str]


class PerfDataError(Exception):
    """The file is not a readable perf-data file: :class:`NotReady` or :class:`NotHotSpot`."""


class NotReady(PerfDataError):
    """A HotSpot file caught while its JVM initialises it or writes an entry: read it again later."""


class NotHotSpot(PerfDataError):
    """Not a perf-data file HotSpot could have written (garbage, another version): never read it again."""


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


@dataclass
class Prologue:
    """The first 32 bytes of a perf-data file, checked."""

    endian: str  # struct prefix: ">" | "<"
    byte_order: str  # "big" | "little"
    major_version: int
    minor_version: int
    accessible: bool
    used: int
    overflow: int
    mod_time_stamp: int
    entry_offset: int
    num_entries: int


def parse_prologue(head: bytes, size: int) -> Prologue:
    """Check the prologue ``head`` (the first bytes of a file of ``size`` bytes).

    Raises :class:`NotReady` for the prologue of a file being created (no bytes,
    zeros) and :class:`NotHotSpot` for one HotSpot would never write: magic, byte
    order, version, or sizes that do not fit the file. ``accessible`` is not
    checked here (:func:`parse` does)."""
    if len(head) < PROLOGUE_SIZE:
        if not any(head) and size < PROLOGUE_SIZE:
            raise NotReady(f"{size} bytes, shorter than the prologue (the JVM is creating it)")
        raise NotHotSpot(f"truncated: {size} bytes, shorter than the prologue")
    if head[:4] != MAGIC:
        if not any(head[:PROLOGUE_SIZE]):
            raise NotReady("no prologue yet (the JVM is initialising it)")
        raise NotHotSpot(f"bad magic {head[:4].hex()}")
    bo = head[4]
    if bo == 0:
        e, order = ">", "big"
    elif bo == 1:
        e, order = "<", "little"
    else:
        raise NotHotSpot(f"bad byte order {bo}")
    major, minor, accessible = head[5], head[6], head[7]
    if major == 0 and minor == 0 and not any(head[8:PROLOGUE_SIZE]):
        raise NotReady("prologue being written (the JVM is initialising it)")
    if (major, minor) != (SUPPORTED_MAJOR, SUPPORTED_MINOR):
        raise NotHotSpot(f"unsupported perf-data version {major}.{minor}")
    used, overflow, mod_ts, entry_offset, num_entries = struct.unpack_from(e + "iiqii", head, 8)
    if used < 0 or used > size:
        raise NotHotSpot(f"used size {used} does not fit the file ({size} bytes)")
    if used >= PROLOGUE_SIZE and (entry_offset < PROLOGUE_SIZE or entry_offset % 4 or entry_offset > used):
        raise NotHotSpot(f"bad entry offset {entry_offset}")
    # every entry takes more than its 20-byte header
    if num_entries < 0 or num_entries > max(0, used - PROLOGUE_SIZE) // ENTRY_HEADER_SIZE:
        raise NotHotSpot(f"bad entry count {num_entries} for {used} bytes used")
    return Prologue(e, order, major, minor, accessible != 0, used, overflow, mod_ts, entry_offset, num_entries)


def parse(buf: bytes, require_accessible: bool = True) -> PerfData:
    """Parse a complete perf-data region. Raises :class:`NotReady` or :class:`NotHotSpot`."""
    p = parse_prologue(buf[:PROLOGUE_SIZE], len(buf))
    e, used, entry_offset, num_entries = p.endian, p.used, p.entry_offset, p.num_entries
    pd = PerfData(p.major_version, p.minor_version, p.byte_order, p.accessible, used, p.overflow,
                  p.mod_time_stamp, num_entries)
    if require_accessible and not p.accessible:
        raise NotReady("not accessible yet (the JVM is initialising or exiting)")
    if used < PROLOGUE_SIZE:
        if num_entries == 0:
            return pd  # freshly initialised, nothing allocated yet
        raise NotHotSpot(f"bad used size {used}")
    limit = used
    pos = entry_offset
    count = 0
    hdr = struct.Struct(e + "iiiBBBBi")
    lng = struct.Struct(e + "q")

    def bad(message: str) -> PerfDataError:
        # the JVM may be writing its last entry (allocated: used and num_entries
        # bumped, in either order); an entry before that is never rewritten
        if count >= num_entries - 1:
            return NotReady(f"{message} (last entry: being written?)")
        return NotHotSpot(message)

    while pos < limit:
        if pos % 4:
            raise bad(f"misaligned entry at {pos:#x}")
        if pos + ENTRY_HEADER_SIZE > limit:
            # a zero-length entry header may be cut off at the very end only if it is empty
            if any(buf[pos:limit]):
                raise bad(f"entry header at {pos:#x} extends past the used region")
            break
        length, name_off, vlen, dtype, flags, units, var, data_off = hdr.unpack_from(buf, pos)
        if length == 0:
            break  # allocated but not written yet: end of data
        if length < ENTRY_HEADER_SIZE or pos + length > limit:
            raise bad(f"bad entry length {length} at {pos:#x}")
        if not (ENTRY_HEADER_SIZE <= name_off < data_off <= length):
            raise bad(f"bad name/data offsets ({name_off}, {data_off}) at {pos:#x}")
        if dtype not in TYPE_CODES:
            raise bad(f"bad type code {dtype:#x} at {pos:#x}")
        if units not in UNITS or var not in VARIABILITY:
            raise bad(f"bad units/variability ({units}, {var}) at {pos:#x}")
        if vlen < 0:
            raise bad(f"bad vector length {vlen} at {pos:#x}")
        raw_name = buf[pos + name_off: pos + data_off]
        nul = raw_name.find(b"\0")
        if nul <= 0:
            raise bad(f"unterminated or empty name at {pos:#x}")
        name = raw_name[:nul].decode("ascii", "replace")
        dstart = pos + data_off
        value: Optional[Value] = None
        if vlen == 0:
            if dtype == ord("J"):
                if data_off + 8 > length:
                    raise bad(f"long value of {name} extends past its entry")
                value = lng.unpack_from(buf, dstart)[0]
        elif dtype == ord("B") and units == 5:
            if data_off + vlen > length:
                raise bad(f"string value of {name} extends past its entry")
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
        raise NotReady(f"incomplete: {count} of {num_entries} entries readable (being written?)")
    return pd


def read_file(path: str, attempts: int = 3, retry_delay: float = 0.01,
              deadline_remaining=None, file_id: Optional[Tuple[int, int]] = None) -> PerfData:
    """Read and parse ``path``; re-read (up to ``attempts`` reads, ``retry_delay``
    apart) only while it is :class:`NotReady`. :class:`NotHotSpot` is raised at
    the first read, without sleeping.

    ``deadline_remaining``: optional callable giving the seconds left; no retry
    is started when less than twice the delay is left. ``file_id``: see
    :func:`read_bytes`. Raises
    :class:`PerfDataError` or :class:`OSError` (file gone, no permission).
    """
    last: Optional[PerfDataError] = None
    for i in range(max(1, attempts)):
        if i:
            if deadline_remaining is not None and deadline_remaining() < retry_delay * 2:
                break
            time.sleep(retry_delay)
        try:
            return parse(read_bytes(path, file_id))
        except NotReady as e:
            last = e
    assert last is not None
    raise last


def read_bytes(path: str, file_id: Optional[Tuple[int, int]] = None) -> bytes:
    """The bytes of ``path`` a parse needs, at most :data:`MAX_FILE_SIZE`: its
    prologue, checked, then the rest of what the prologue says is used.

    The file is looked at before it is opened for reading (an ``O_PATH`` descriptor:
    a device node or a named pipe a directory's owner put there is never opened, so
    no driver runs and no one waiting for a reader wakes), then opened through that
    descriptor, never by its path again. With ``file_id`` (``(st_dev, st_ino)``, as
    the file was listed) any other file is refused: a path whose directories were
    swapped for symbolic links since leads nowhere else.

    Raises :class:`NotHotSpot` (not a regular file, a symbolic link, not the file
    listed, too large, a prologue HotSpot would not write), :class:`NotReady` (a
    prologue not yet written) or :class:`OSError`."""
    # O_PATH | O_NOFOLLOW: a symbolic link is opened as itself, anything else without its open
    where = os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        st = os.fstat(where)
        if stat.S_ISLNK(st.st_mode):
            raise NotHotSpot("a symbolic link")
        if not stat.S_ISREG(st.st_mode):
            raise NotHotSpot("not a regular file")
        if file_id is not None and (st.st_dev, st.st_ino) != tuple(file_id):
            raise NotHotSpot("not the file listed (its path leads elsewhere now)")
        if st.st_size > MAX_FILE_SIZE:
            raise NotHotSpot(f"too large for a perf-data file ({st.st_size} bytes)")
        fd = os.open(f"/proc/self/fd/{where}", os.O_RDONLY | os.O_CLOEXEC)  # this very file
    finally:
        os.close(where)
    try:
        head = _read(fd, PROLOGUE_SIZE)
        p = parse_prologue(head, st.st_size)
        return head + _read(fd, p.used - len(head))
    finally:
        os.close(fd)


def _read(fd: int, n: int) -> bytes:
    """Up to ``n`` bytes (fewer at the end of the file)."""
    chunks = []
    while n > 0:
        b = os.read(fd, n)
        if not b:
            break
        chunks.append(b)
        n -= len(b)
    return b"".join(chunks)
