# Sourced by scripts/test.sh and scripts/main-job.sh: the Debian packages SSB's real-media work needs.
#   opencv-doc  /usr/share/doc/opencv-doc/examples/data/vtest.avi (the real clip)
#   ffmpeg      libx264, libx265, libsvtav1 (the pixel video codecs of `ssb eval --video`)
# `ssb_require_debs PKG...` installs the missing ones with apt-get (as root, or through sudo) and
# fails, with the reason, when it cannot.
ssb_require_debs() {
  local missing=() apt=()
  for pkg in "$@"; do
    case "$pkg" in
      opencv-doc) [ -f /usr/share/doc/opencv-doc/examples/data/vtest.avi ] || [ -n "${SSB_VTEST:-}" ] || missing+=("$pkg") ;;
      ffmpeg) command -v ffmpeg >/dev/null || missing+=("$pkg") ;;
      *) dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg") ;;
    esac
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if ! command -v apt-get >/dev/null; then
    echo "error: SSB needs the Debian packages ${missing[*]} and this machine has no apt-get" >&2; return 1
  fi
  if [ "$(id -u)" = 0 ]; then apt=(apt-get); elif command -v sudo >/dev/null; then apt=(sudo -n apt-get)
  else echo "error: SSB needs the Debian packages ${missing[*]} and cannot install them (not root, no sudo)" >&2; return 1; fi
  echo "installing Debian packages: ${missing[*]}" >&2
  "${apt[@]}" update -qq >/dev/null || { echo "error: apt-get update failed" >&2; return 1; }
  DEBIAN_FRONTEND=noninteractive "${apt[@]}" install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || { echo "error: apt-get install ${missing[*]} failed" >&2; return 1; }
}
