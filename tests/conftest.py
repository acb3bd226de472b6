import shutil
import sys
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # testbed, lab, tests.helpers

from testbed.jvm import compile_apps, have_java  # noqa: E402


@pytest.fixture(scope="session")
def jvm_classes() -> Iterator[Path]:
    """testbed/jvmapps compiled, in a world-readable directory of its own (not under
    pytest's basetemp: pytest resets that to 0700, and other pytest sessions of
    the same user share it)."""
    if not have_java():
        pytest.skip("needs a JDK")
    d = Path(tempfile.mkdtemp(prefix="sparkwatch-jvmapps-"))
    try:
        yield compile_apps(d)
    finally:
        shutil.rmtree(d, ignore_errors=True)
