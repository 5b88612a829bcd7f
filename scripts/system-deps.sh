# Sourced by scripts/test.sh and scripts/main-job.sh: the Debian packages SSB's real-media work needs.
#   opencv-doc  /usr/share/doc/opencv-doc/examples/data/vtest.avi (the real clip)
#   ffmpeg      libx264, libx265, libsvtav1 (the pixel video codecs of `ssb eval --video`)
# Installs what is missing with apt-get (as root, or through sudo); fails when it cannot.
_ssb_missing=()
[ -f /usr/share/doc/opencv-doc/examples/data/vtest.avi ] || [ -n "${SSB_VTEST:-}" ] || _ssb_missing+=(opencv-doc)
command -v ffmpeg >/dev/null || _ssb_missing+=(ffmpeg)
if [ ${#_ssb_missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then _ssb_apt=(apt-get); elif command -v sudo >/dev/null; then _ssb_apt=(sudo -n apt-get);
  else echo "error: SSB needs the Debian packages ${_ssb_missing[*]} and cannot install them (not root, no sudo)" >&2; exit 1; fi
  if ! command -v apt-get >/dev/null; then
    echo "error: SSB needs ${_ssb_missing[*]} (Debian packages) and this machine has no apt-get" >&2; exit 1
  fi
  echo "installing Debian packages: ${_ssb_missing[*]}" >&2
  "${_ssb_apt[@]}" update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive "${_ssb_apt[@]}" install -y -qq --no-install-recommends "${_ssb_missing[@]}" >/dev/null
fi
unset _ssb_missing _ssb_apt
