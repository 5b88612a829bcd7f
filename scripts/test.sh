#!/usr/bin/env bash
# Install SSB with everything its tests need, then check the architecture contracts and run the tests.
#
# * Debian packages: opencv-doc (vtest.avi, the real clip of the real-media tests) and ffmpeg
#   (x264, x265 and SVT-AV1: the pixel video codecs the video evaluation compares against);
# * the project with its dev extra (codec, teachers, eval, onnx, remote, test tools);
# * mmaction2 without its declared dependencies (requirements/action.txt says why).
#
# Any failed step stops the script with an error, and the tests run with SSB_REQUIRE_ALL=1: a test
# that would skip because part of this install is missing fails instead (tests/conftest.py).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/system-deps.sh
ssb_require_debs opencv-doc ffmpeg
python3 -m pip install -q -e ".[dev]"
python3 -m pip install -q --no-deps -r requirements/action.txt
# derandomized property tests: a CI result depends on the commit only (tests/conftest.py)
export HYPOTHESIS_PROFILE="${HYPOTHESIS_PROFILE:-ci}"
export SSB_REQUIRE_ALL="${SSB_REQUIRE_ALL:-1}"
python3 scripts/lint_imports.py
python3 -m pytest -q --continue-on-collection-errors --nbmake tests examples "$@"
