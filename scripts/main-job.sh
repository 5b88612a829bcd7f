#!/usr/bin/env bash
# The main job: encode the first 4 seconds (40 frames) of the vtest.avi surveillance clip as an SSB
# video stream with the shipped reference models (key frame + predicted frames: MOTION and
# RESIDUAL units, object tracks in the index), show its structure, GOPs and tracks from the
# headers alone, then print the detections with their track ids read straight from the bitstream
# (no pixel reconstruction) and the bytes the analysis read; last, the motion-only path: how each
# person moved in frames 30..39, from the MOTION units and the index alone.
#
# Usage: bash scripts/main-job.sh [OUT_DIR] [FRAMES]     (default /tmp/ssb-main-job, 0:40)
# Writes OUT_DIR/vtest.ssb, vtest.detections.json (COCO results) and vtest.tracks.txt (MOT text).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/system-deps.sh"
ssb_require_debs opencv-doc
vtest=${SSB_VTEST:-/usr/share/doc/opencv-doc/examples/data/vtest.avi}
out=${1:-${TMPDIR:-/tmp}/ssb-main-job}
frames=${2:-0:40}
mkdir -p "$out"
ssb encode "$vtest" --frames "$frames" -o "$out/vtest.ssb"
ssb info "$out/vtest.ssb" --max-frames 8
ssb analyze "$out/vtest.ssb" --task detection --json "$out/vtest.detections.json" --mot "$out/vtest.tracks.txt"
ssb analyze "$out/vtest.ssb" --task motion --frames 30:40 --classes person
