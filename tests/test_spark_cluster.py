"""A real Spark standalone cluster (testbed.cluster): one spark target with
``discover: standalone`` finds every running application's driver UI, and the
jvm target on the worker host labels each executor JVM with the ``app_id`` and
``executor_id`` its Spark series carry, so the two join by ``app_id``."""

from __future__ import annotations

import time

import pytest

from testbed.cluster import standalone_cluster
from testbed.exporter import running_exporter, samples, scrape, value
from testbed.spark import spark_app
from tests.helpers import spark_python

pytestmark = [pytest.mark.spark, pytest.mark.slow]


@pytest.mark.parametrize("version", ["4.0", "3.5"])
def test_standalone_discovery_and_executor_jvms_join_by_app_id(version):
    spark_python(version)  # skips when that pyspark is not installed
    with standalone_cluster(version) as c, \
            spark_app(version, master=c.master_url, app_name="stream-a") as a, \
            spark_app(version, master=c.master_url, app_name="batch-b", stream=False) as b:
        cfg = {"exporter": {"scrape_timeout": 30},
               "spark": [{"name": "cluster", "url": c.web_url, "discover": "standalone"}],
               "jvm": [{"discover": True}]}
        with running_exporter(cfg) as (base, _):
            # executors register with their application a little after it starts
            end = time.monotonic() + 90
            while True:
                ss = samples(scrape(base, timeout_header=30))
                with_execs = {lab["app_id"] for n, lab, _ in ss
                              if n == "spark_executor_run_seconds_total" and lab["executor_id"] != "driver"}
                jvm_apps = {lab.get("app_id") for n, lab, _ in ss if n == "jvm_info"}
                if {a.app_id, b.app_id} <= with_execs & jvm_apps or time.monotonic() > end:
                    break
                time.sleep(2)
            assert value(ss, "sparkwatch_target_up", kind="spark", target="cluster") == 1
            assert value(ss, "spark_cluster_applications", target="cluster") == 2
            assert value(ss, "spark_cluster_applications_scraped", target="cluster") == 2
            apps = {lab["app_id"]: lab["app_name"] for n, lab, _ in ss
                    if n == "spark_app_info" and lab["target"] == "cluster"}
            assert apps == {a.app_id: "stream-a", b.app_id: "batch-b"}
            # each application's executors are JVMs of their own on this (the worker's) host,
            # labelled so that they join the application's Spark series by app_id
            for app in (a, b):
                spark_execs = {lab["executor_id"] for n, lab, _ in ss
                               if n == "spark_executor_run_seconds_total" and lab["app_id"] == app.app_id
                               and lab["executor_id"] != "driver"}
                jvm_execs = {lab["executor_id"] for n, lab, _ in ss
                             if n == "jvm_info" and lab.get("app_id") == app.app_id}
                assert spark_execs, f"no executor series for {app.app_id}"
                assert jvm_execs == spark_execs, (app.app_id, jvm_execs, spark_execs)
                for n, lab, _ in ss:
                    if n == "jvm_info" and lab.get("app_id") == app.app_id:
                        assert lab["process"] == "CoarseGrainedExecutorBackend"
            # the streaming application's query series carry its app_id too
            assert any(n == "spark_streaming_state_rows" and lab["app_id"] == a.app_id for n, lab, _ in ss)

            # an application that ends drops out within a scrape
            from testbed.procs import stop_process_group

            stop_process_group(b.process, grace=15)
            end = time.monotonic() + 60
            while True:
                ss = samples(scrape(base, timeout_header=30))
                apps = {lab["app_id"] for n, lab, _ in ss if n == "spark_app_info" and lab["target"] == "cluster"}
                if apps == {a.app_id}:
                    break
                assert time.monotonic() < end, apps
                time.sleep(1)
            assert value(ss, "sparkwatch_target_up", kind="spark", target="cluster") == 1
