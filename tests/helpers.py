"""pytest glue for the testbed (``testbed/``: the real software the tests run against):
skips when a piece of it cannot run here. The shared fixtures (``jvm_classes``, ``pki``, ``zk``) are in conftest.py."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

from testbed import jvm, spark

requires_java = pytest.mark.skipif(not jvm.have_java(), reason="needs a JDK (java, javac, jcmd)")


@contextmanager
def os_user(prefix: str = "swjvm") -> Iterator[str]:
    """:func:`testbed.jvm.os_user`; skips the test unless it runs as root."""
    if os.geteuid() != 0:
        pytest.skip("creating a user needs root")
    with jvm.os_user(prefix) as name:
        yield name


def spark_python(version: str) -> Path:
    """The interpreter for ``version``; skips the test if its venv does not exist."""
    py = spark.SPARK_PYTHONS[version]
    if not py.exists():
        pytest.skip(f"pyspark {version}: no venv at {py.parent.parent} (CI always has it; see scripts/install-test-deps)")
    return py
