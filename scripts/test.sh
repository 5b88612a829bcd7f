#!/usr/bin/env bash
# Install SSB with everything its tests need, then run the tests and the architecture contracts.
# Real media for the real-frame tests comes from Debian's opencv-doc (vtest.avi), installed when apt is usable.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -f /usr/share/doc/opencv-doc/examples/data/vtest.avi ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq opencv-doc) >/dev/null 2>&1 \
    || echo "warning: could not install opencv-doc; real-media tests will be skipped" >&2
fi
python3 -m pip install -q -e ".[dev]"
# derandomized property tests: a CI result depends on the commit only (tests/conftest.py)
export HYPOTHESIS_PROFILE="${HYPOTHESIS_PROFILE:-ci}"
python3 scripts/lint_imports.py
python3 -m pytest -q --nbmake tests examples "$@"
