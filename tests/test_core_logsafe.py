"""sparkwatch.logsafe: one escaped, bounded line per record; other libraries' records
and RateLimitedLog's messages rate-limited with a count of what was held back.
A fake clock drives the intervals (no sleeping, no dependence on speed)."""

import io
import logging
import re
import warnings

import pytest

from sparkwatch import logsafe

LINE = re.compile(r"^ts=\S+ \S+ level=[A-Z]+ caller=\w+ msg=(['\"]).*\1( suppressed=\d+)?( exc=(['\"]).*\4)?$")


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def logged():
    """(clock, text written so far) with the exporter's logging configured on a buffer."""
    clock, buf = Clock(), io.StringIO()
    root = logging.getLogger()
    saved = root.level
    handler = logsafe.configure(logging.INFO, stream=buf, interval=60, clock=clock)
    try:
        yield clock, buf.getvalue
    finally:
        root.removeHandler(handler)
        root.setLevel(saved)
        logging.captureWarnings(False)


def _lines(text):
    lines = text.splitlines()
    for line in lines:
        assert LINE.match(line), line
        assert not re.search(r"[\x00-\x1f\x7f]", line), line
    return lines


HOSTILE = "evil\r\n\x1b[31mts=forged level=ERROR\x00\u202e" + "A" * 5000


def test_a_hostile_message_is_one_escaped_bounded_line(logged):
    _, text = logged
    logging.getLogger("sparkwatch.test").warning("target said %s", HOSTILE)
    [line] = _lines(text())
    assert "\\x1b[31m" in line and "\\r\\n" in line and "\\u202e" in line
    assert "more characters]" in line and len(line) < logsafe.MAX_MESSAGE + 200


def test_other_libraries_exceptions_become_one_field_without_traceback(logged):
    _, text = logged
    urllib3_log = logging.getLogger("urllib3.connectionpool")
    try:
        raise ValueError("unparsed data: '" + HOSTILE + "'")
    except ValueError as e:
        rec = urllib3_log.makeRecord(urllib3_log.name, logging.WARNING, "/usr/lib/python3/urllib3/connectionpool.py",
                                     1, "Failed to parse headers (url=%s): %s", ("http://x/", e), None)
        rec.exc_info = (ValueError, e, e.__traceback__)
    urllib3_log.handle(rec)
    [line] = _lines(text())
    assert "Traceback" not in line and " exc='ValueError: unparsed data" in line.replace('"', "'")


def test_own_tracebacks_stay_on_one_line(logged):
    _, text = logged
    own = logging.getLogger("sparkwatch.test")
    try:
        raise RuntimeError("bug\nsecond line")
    except RuntimeError as e:  # as if logged by exporter/scrape.py
        own.handle(own.makeRecord(own.name, logging.ERROR, logsafe.__file__.replace("logsafe", "scrape"), 1,
                                  "collector failed", (), (RuntimeError, e, e.__traceback__)))
    [line] = _lines(text())
    assert "exc='Traceback (most recent call last):\\n" in line and "RuntimeError: bug\\nsecond line" in line


def _foreign(logger, msg, *args):
    logger.handle(logger.makeRecord(logger.name, logging.WARNING, "/usr/lib/python3/dist-packages/lib.py", 1,
                                    msg, args, None))


def _own(msg, *args):  # as if logged by exporter/scrape.py
    own = logging.getLogger("sparkwatch")
    own.handle(own.makeRecord(own.name, logging.WARNING, logsafe.__file__.replace("logsafe", "scrape"), 1,
                              msg, args, None))


def test_other_libraries_repeats_are_held_back_and_counted(logged):
    clock, text = logged
    lib = logging.getLogger("urllib3.connectionpool")
    for i in range(5):
        _foreign(lib, "Failed to parse headers (url=%s)", f"http://t{i}/")
    _foreign(lib, "another message %s", 1)                 # another format string: its own key
    _own("own %s", 1)   # sparkwatch's own records are not held back
    _own("own %s", 2)
    assert len(_lines(text())) == 4
    clock.now += 61
    _foreign(lib, "Failed to parse headers (url=%s)", "http://t9/")
    last = _lines(text())[-1]
    assert "http://t9/" in last and last.endswith("suppressed=4")
    _foreign(lib, "Failed to parse headers (url=%s)", "http://t10/")
    assert len(_lines(text())) == 5


def test_rate_limited_log_counts_and_flushes(logged):
    clock, text = logged
    warn = logsafe.RateLimitedLog(logging.getLogger("sparkwatch.jvm"), interval=60, clock=clock)
    assert warn.warning("perf-data file %s: %s", "/tmp/a", "garbage")
    assert not any(warn.warning("perf-data file %s: %s", f"/tmp/{i}", "garbage") for i in range(10))
    assert warn.warning("other %s", "x") and warn.warning("perf-data", key="k1") and not warn.warning("x", key="k1")
    warn.flush()  # nothing due yet
    lines = _lines(text())
    assert len(lines) == 3 and "caller=test_core_logsafe" in lines[0]
    clock.now += 60
    warn.flush()  # the last one held back, with the number held back besides it
    lines = _lines(text())
    assert len(lines) == 5 and "/tmp/9" in lines[3] and lines[3].endswith("suppressed=9")
    assert lines[4].endswith("msg='x'")
    warn.flush()
    assert len(_lines(text())) == 5
    assert not warn.debug("not enabled")  # below the level: not even counted


def test_rate_limit_remembers_a_bounded_number_of_keys():
    clock = Clock()
    limit = logsafe.RateLimit(interval=10, max_keys=3, clock=clock)
    assert [limit.admit(k) for k in "abc"] == [0, 0, 0]
    assert limit.admit("a") is None
    assert limit.admit("d") == 0 and len(limit._keys) == 3  # "a" was logged first: forgotten
    assert limit.admit("a") == 0


def test_python_warnings_are_logged_in_the_format(logged):
    _, text = logged
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        for _ in range(3):
            warnings.warn("careful\nnow")  # the 2nd and 3rd held back
        warnings.warn("another one")   # another warning: logged
    lines = _lines(text())
    assert len(lines) == 2 and "careful\\nnow" in lines[0] and "another one" in lines[1]


def test_configure_replaces_its_own_handler_only(logged):
    root = logging.getLogger()
    other = logging.NullHandler()
    root.addHandler(other)
    try:
        h = logsafe.configure(logging.WARNING, stream=io.StringIO())
        ours = [x for x in root.handlers if getattr(x, "sparkwatch", False)]
        assert ours == [h] and other in root.handlers and root.level == logging.WARNING
        root.removeHandler(h)
    finally:
        root.removeHandler(other)
