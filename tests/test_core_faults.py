"""A target that is down, hangs, is slow or answers garbage costs at most the
deadline, is reported down with a reason, and never affects the others."""

import logging
import threading
import time

import pytest

from sparkwatch.collector import Collector, MetricSet, ScrapeContext, TargetError, gauge
from sparkwatch.scrape import Scraper, Target
from sparkwatch.httpclient import MAX_BODY_BYTES
from testbed.exporter import running_exporter, scrape, value
from testbed.faulty_http import faulty_server
from testbed.hostile_json import SHAPES, HostileServer

FAULTS = {
    "http500": "http_status",
    "html": "invalid_response",
    "text": "invalid_response",
    "truncated": "invalid_response",
    "hang": "timeout",
    "trickle": "timeout",
    "reset": "connection",
    "unauthorized": "auth",
}
#: bodies of testbed.hostile_json, each as large as a body may be: decoded, they would not
#: fit the target's memory budget
HOSTILE_BODIES = {shape: "limit" for shape in SHAPES}


def _bad_server(mode: str):
    return faulty_server(mode) if mode in FAULTS else HostileServer(mode, MAX_BODY_BYTES)

PROMETHEUS_TIMEOUT = 3.0  # what Prometheus would send; the deadline is this less the 0.5 s offset


@pytest.mark.parametrize("mode,reason", sorted(FAULTS.items()) + sorted(HOSTILE_BODIES.items()))
def test_fault_marks_only_that_target_down(mode, reason):
    with _bad_server(mode) as bad, faulty_server("ok") as good:
        config = {"spark": [{"name": "bad", "url": bad.url}, {"name": "good", "url": good.url}],
                  "exporter": {"scrape_timeout": 30}}
        with running_exporter(config) as (url, _):
            t0 = time.monotonic()
            text = scrape(url, timeout_header=PROMETHEUS_TIMEOUT)
            elapsed = time.monotonic() - t0
    # the answer came within Prometheus' timeout, not the configured 30 s
    assert elapsed < PROMETHEUS_TIMEOUT, f"scrape took {elapsed:.2f}s"
    assert value(text, "sparkwatch_target_up", kind="spark", target="bad") == 0
    assert value(text, "sparkwatch_target_up", kind="spark", target="good") == 1
    assert value(text, "sparkwatch_target_scrape_errors_total", kind="spark", target="bad", reason=reason) == 1
    assert not [l for l in text.splitlines() if 'target="good"' in l and "errors_total" in l]
    assert value(text, "sparkwatch_target_scrape_duration_seconds", kind="spark", target="bad") <= PROMETHEUS_TIMEOUT


def test_connection_refused_is_down_with_reason():
    with faulty_server("ok") as srv:
        url_of_closed_port = srv.url
    with running_exporter({"spark": [{"name": "gone", "url": url_of_closed_port}]}) as (url, _):
        text = scrape(url)
    assert value(text, "sparkwatch_target_up", target="gone") == 0
    assert value(text, "sparkwatch_target_scrape_errors_total", target="gone", reason="connection") == 1


def test_error_counter_accumulates_across_scrapes():
    with faulty_server("http500") as bad:
        with running_exporter({"spark": [{"name": "bad", "url": bad.url}]}) as (url, _):
            for _ in range(3):
                text = scrape(url)
    assert value(text, "sparkwatch_target_scrape_errors_total", target="bad", reason="http_status") == 3


# ---------------------------------------------------------------- cluster discovery

#: a hostile cluster manager (a stand-in standalone master, or a YARN RM) -> the reasons its
#: target may count: each costs that target within the deadline, never the others
CLUSTER_FAULTS = {
    "master_home_page_of_16_mib_of_lt": {"timeout", "partial"},
    "master_with_3000_hidden_applications": {"partial"},
    "master_linking_a_ui_on_another_host": {"partial"},
    "rm_tracking_url_on_another_host": {"partial"},
}


def _hostile_manager(mode: str, elsewhere: str):
    from testbed.standalone_master import MasterApp, StandaloneMaster
    from testbed.yarn import YarnCluster

    if mode.startswith("rm_"):
        rm = YarnCluster()
        rm.add_app("a", unmanaged=True, tracking_url=elsewhere)  # an unmanaged AM registers any URL
        return rm, "yarn"
    m = StandaloneMaster()
    if mode == "master_home_page_of_16_mib_of_lt":
        m.apps = [MasterApp("app-20261201000000-0000")]
        m.home_body = b"<" * (16 * 1024 * 1024)
    elif mode == "master_with_3000_hidden_applications":
        m.apps = [MasterApp(f"app-20261201000000-{i:04d}", on_home_page=False) for i in range(3000)]
    else:
        m.apps = [MasterApp("app-20261201000000-0000", ui=elsewhere)]
    return m, "standalone"


@pytest.mark.parametrize("mode", sorted(CLUSTER_FAULTS))
def test_a_hostile_cluster_manager_costs_its_target_only_within_the_deadline(mode):
    from testbed.exporter import no_scrape_threads_within, samples

    with faulty_server("ok") as elsewhere, faulty_server("ok") as good:
        manager, discover = _hostile_manager(mode, elsewhere.url.replace("127.0.0.1", "localhost") + "/")
        with manager:
            config = {"spark": [{"name": "bad", "url": manager.url, "discover": discover, "max_applications": 50},
                                {"name": "good", "url": good.url}],
                      "exporter": {"scrape_timeout": 30}}
            with running_exporter(config) as (url, _):
                t0 = time.monotonic()
                ss = samples(scrape(url, timeout_header=PROMETHEUS_TIMEOUT))
                elapsed = time.monotonic() - t0
                assert no_scrape_threads_within(10), "the hostile target's work outlived the scrape"
    assert elapsed < PROMETHEUS_TIMEOUT, f"scrape took {elapsed:.2f}s"
    assert elsewhere.requests == []  # a driver UI on another host is never asked
    assert value(ss, "sparkwatch_target_up", kind="spark", target="good") == 1
    assert not [lab for n, lab, v in ss if n == "sparkwatch_target_scrape_errors_total" and lab["target"] == "good"]
    reasons = {lab["reason"] for n, lab, v in ss
               if n == "sparkwatch_target_scrape_errors_total" and lab["target"] == "bad" and v}
    assert reasons and reasons <= CLUSTER_FAULTS[mode], reasons
    if reasons == {"partial"}:
        assert value(ss, "sparkwatch_target_up", kind="spark", target="bad") == 1


# ---------------------------------------------------------------- the engine itself

PROBE_METRIC = gauge("sparkwatch_test_probe_value", "Test-only metric.", ["step"], source="test")


class _Blocking(Collector):
    kind = "test"
    metrics = (PROBE_METRIC,)

    def __init__(self, name):
        class C:
            def display_name(self_inner):
                return name
        super().__init__(C())
        self.release = threading.Event()
        self.calls = 0

    def collect(self, out: MetricSet, scrape: ScrapeContext) -> None:
        self.calls += 1
        self.release.wait(30)
        out.add(PROBE_METRIC, self.calls, step="x")


class _Exploding(_Blocking):
    def collect(self, out, scrape):
        raise KeyError("bug")


class _Fine(_Blocking):
    def collect(self, out, scrape):
        out.add(PROBE_METRIC, 7, step="fine")


def _up(families, name):
    fam = next(f for f in families if f.name == "sparkwatch_target_up")
    return next(s.value for s in fam.samples if s.labels["target"] == name)


def _errors(families, name, reason):
    fam = next(f for f in families if f.name == "sparkwatch_target_scrape_errors")
    return sum(s.value for s in fam.samples if s.labels["target"] == name and s.labels["reason"] == reason)


def test_engine_timeout_then_shared_then_recovers():
    slow, fine = _Blocking("slow"), _Fine("fine")
    scraper = Scraper([Target(slow), Target(fine)], max_timeout=10, offset=0)
    fams = scraper.scrape(0.3)
    assert _up(fams, "slow") == 0 and _errors(fams, "slow", "timeout") == 1
    assert _up(fams, "fine") == 1
    # the first collect() is still running: the next scrape waits for it (no second thread),
    # and with no complete result yet it is down, the timeout counted once per collection
    fams = scraper.scrape(0.3)
    assert _up(fams, "slow") == 0 and _errors(fams, "slow", "timeout") == 1
    assert slow.calls == 1
    slow.release.set()
    assert scraper.targets[0]._running.done.wait(5)  # the first collection has ended
    fams = scraper.scrape(2)
    assert _up(fams, "slow") == 1
    values = {s.labels["step"]: s.value for f in fams if f.name == PROBE_METRIC.name for s in f.samples}
    assert values == {"x": 2, "fine": 7}


def test_engine_bug_in_collector_is_internal_error_and_logged(caplog):
    caplog.set_level(logging.ERROR, logger="sparkwatch")
    boom, fine = _Exploding("boom"), _Fine("fine")
    fams = Scraper([Target(boom), Target(fine)], 10, 0).scrape(2)
    assert _up(fams, "boom") == 0 and _errors(fams, "boom", "internal") == 1
    assert _up(fams, "fine") == 1
    assert "KeyError" in caplog.text


def test_deadline_from_prometheus_header_capped_by_config():
    s = Scraper([], max_timeout=10, offset=0.5)
    assert s.deadline_seconds("4") == 3.5
    assert s.deadline_seconds("60") == 10
    assert s.deadline_seconds(None) == 10
    assert s.deadline_seconds("garbage") == 10
    assert s.deadline_seconds("0.2") == 10  # nothing left after the offset: use the configured maximum


def test_deadline_header_reaches_the_scrape():
    with faulty_server("ok") as good:
        with running_exporter({"spark": [{"url": good.url}], "exporter": {"timeout_offset": 0.25}}) as (url, _):
            text = scrape(url, timeout_header=2)
    assert value(text, "sparkwatch_scrape_deadline_seconds") == 1.75


def test_target_error_rejects_unknown_reason():
    with pytest.raises(ValueError):
        TargetError("whatever", "x")


class _Slow(Collector):
    """Answers after ``delay`` seconds with the number of its collections."""

    kind = "test"
    metrics = (PROBE_METRIC,)

    def __init__(self, name, delay):
        class C:
            def display_name(self_inner):
                return name
        super().__init__(C())
        self.delay = delay
        self.calls = 0

    def collect(self, out, scrape):
        self.calls += 1
        n = self.calls
        time.sleep(self.delay)
        out.add(PROBE_METRIC, n, step="slow")


def _value(families):
    return [s.value for f in families if f.name == PROBE_METRIC.name for s in f.samples]


def test_overlapping_scrapes_share_one_collection_and_both_get_the_truth():
    slow = _Slow("slow", 0.6)
    scraper = Scraper([Target(slow)], max_timeout=10, offset=0)
    got = {}

    def one(key):
        got[key] = scraper.scrape(3)

    first = threading.Thread(target=one, args=("a",))
    first.start()
    time.sleep(0.2)  # the second Prometheus of the pair, while the first scrape runs
    one("b")
    first.join()
    assert slow.calls == 1
    for key in ("a", "b"):
        assert _up(got[key], "slow") == 1, key
        assert _value(got[key]) == [1]
    assert _errors(got["b"], "slow", "timeout") == 0


def test_a_scrape_that_cannot_wait_gets_the_last_complete_result_while_fresh():
    slow = _Slow("slow", 0.0)
    target = Target(slow)
    scraper = Scraper([target], max_timeout=10, offset=0)
    assert _value(scraper.scrape(2)) == [1]
    slow.delay = 1.5
    t = threading.Thread(target=scraper.scrape, args=(5,))
    t.start()
    end = time.monotonic() + 5
    while slow.calls < 2 and time.monotonic() < end:  # the other scrape's collection is running
        time.sleep(0.01)
    fams = scraper.scrape(0.4)  # shorter than the running collection
    assert _up(fams, "slow") == 1 and _value(fams) == [1]  # the last complete result, not a false down
    t.join()
    assert _value(scraper.scrape(5)) == [3]
    # once it is older than the scrape timeout, the last result is not served any more
    stale = Scraper([target], max_timeout=0.1, offset=0)
    slow.delay = 1.0
    time.sleep(0.2)
    t = threading.Thread(target=stale.scrape, args=(0.1,))
    t.start()
    time.sleep(0.05)
    fams = stale.scrape(0.05)
    assert _up(fams, "slow") == 0
    t.join()


def test_fifty_concurrent_metrics_requests_all_see_a_fast_target_up():
    with faulty_server("ok") as good:
        with running_exporter({"spark": [{"url": good.url}]}) as (url, _):
            results = []

            def one():
                results.append(value(scrape(url), "sparkwatch_target_up", target=good.url[len("http://"):]))

            threads = [threading.Thread(target=one) for _ in range(50)]
            for th in threads:
                th.start()
            for th in threads:
                th.join(30)
    assert len(results) == 50
    assert results.count(1.0) == 50, results
