"""Suite-wide test configuration.

Hypothesis profiles: ``dev`` (default for a bare ``pytest``) explores new random examples on
every run; ``ci`` (what ``scripts/test.sh`` selects) is derandomized, so a CI run is a
function of the commit alone and a failure it reports reproduces exactly.  Select one with
``HYPOTHESIS_PROFILE=dev|ci``; explore harder with ``--hypothesis-seed=N`` in a loop.
"""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("dev", print_blob=True)
settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))
