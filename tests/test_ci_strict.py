"""The suite's no-silent-skip rule (tests/conftest.py): under SSB_REQUIRE_ALL=1 a skip fails."""

from __future__ import annotations

import shutil
from pathlib import Path

CONFTEST = Path(__file__).with_name("conftest.py")

SKIPPING = """
import pytest

def test_needs_a_package():
    pytest.importorskip("ssb_no_such_package_anywhere")

@pytest.mark.gpu
def test_needs_cuda():
    pytest.skip("no CUDA device")

@pytest.mark.xfail(reason="known")
def test_known_bug():
    assert False
"""


def _run(pytester, monkeypatch, strict: bool):
    shutil.copy(CONFTEST, pytester.path / "conftest.py")
    pytester.makeini("[pytest]\nmarkers =\n    gpu: cuda\n    platform: machine\n")
    pytester.makepyfile(test_skips=SKIPPING)
    pytester.makepyfile(test_module_skip="import pytest\npytest.importorskip('ssb_no_such_package')\n"
                                         "def test_x():\n    pass\n")
    if strict:
        monkeypatch.setenv("SSB_REQUIRE_ALL", "1")
    else:
        monkeypatch.delenv("SSB_REQUIRE_ALL", raising=False)
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "--continue-on-collection-errors")


def test_skips_are_skips_by_default(pytester, monkeypatch):
    res = _run(pytester, monkeypatch, strict=False)
    res.assert_outcomes(skipped=3, xfailed=1)


def test_skips_fail_under_require_all(pytester, monkeypatch):
    res = _run(pytester, monkeypatch, strict=True)
    # the package test and the module-level skip fail; the gpu skip and the xfail stay as they are
    res.assert_outcomes(failed=1, errors=1, skipped=1, xfailed=1)
    assert "SSB_REQUIRE_ALL=1" in res.stdout.str()
