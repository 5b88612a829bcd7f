#!/usr/bin/env bash
# The main job: encode a real frame of the vtest.avi surveillance clip with the shipped reference
# model, show the stream's structure from its headers, and print the detections read straight from
# the bitstream (no pixel reconstruction). Usage: bash scripts/main-job.sh [OUT.ssb] [FRAMES]
set -euo pipefail
vtest=${SSB_VTEST:-/usr/share/doc/opencv-doc/examples/data/vtest.avi}
out=${1:-vtest.ssb}
frames=${2:-0:1}
ssb encode "$vtest" --frames "$frames" -o "$out"
ssb info "$out"
ssb analyze "$out" --task detection --json "${out%.ssb}.detections.json"
