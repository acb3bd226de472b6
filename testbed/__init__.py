"""sparkwatch's testbed: the real software that the tests, the lab and the benchmarks
run against, and the code that starts and stops it.

- :mod:`testbed.zookeeper`   a real ZooKeeper server (Debian's package), Livy's state store in it
- :mod:`testbed.livy_server` the Livy REST stand-in (the one fake: Livy needs YARN)
- :mod:`testbed.jvm`         real JVMs built from ``testbed/jvmapps/*.java``, test users
- :mod:`testbed.spark`       real Spark applications (``testbed/sparkapps/``), the history
  server, and a replay server for recorded Spark responses
- :mod:`testbed.yarn`        a YARN ResourceManager stand-in rebuilt from Hadoop's sources: its
  REST API, web proxy, AmIpFilter'd AMs, HA pair, pseudo authentication, Kerberos in front
- :mod:`testbed.kerberos`    an MIT Kerberos realm (KDC on loopback) and an Apache SPNEGO front
- :mod:`testbed.faulty_http` an HTTP server that answers with one chosen fault
- :mod:`testbed.exporter`    the exporter run in-process, and reading what it exports
- :mod:`testbed.procs`       free ports, stopping a process group
- :mod:`testbed.hsperf_garbage` perf-data files any local user can leave in /tmp, and their processes

Everything started here is stopped when its context ends, failure included.
Nothing here imports pytest or the tests: pytest glue (fixtures, skips) lives in
``tests/``. Not shipped: the wheel holds only ``exporter`` (see pyproject.toml).
Import it from a repository checkout (the repository root on ``sys.path``).
"""
