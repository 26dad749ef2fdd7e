# Shared by scripts/weft and scripts/check: install what weft needs, build.
# shellcheck shell=bash

WEFT_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# Every Debian package the build, the tests and the benchmarks need.
WEFT_PACKAGES=(
  g++ meson ninja-build pkg-config cmake
  libuv1-dev libsimdjson-dev rapidjson-dev libfmt-dev libcli11-dev doctest-dev
  libyaml-cpp-dev libtomlplusplus-dev libsqlite3-dev libzstd-dev libboost-dev
  perl python3 time procps make libxml2-utils zstd chromium libtest2-harness-perl
  strace
)

weft_say() { printf '%s\n' "$*" >&2; }

# Installs the packages that are missing (only those), apt-get update first.
# A stamp in the build tree keeps later calls fast.
weft_ensure_deps() {
  local stamp="$WEFT_ROOT/build/.weft-deps" want
  want=$(printf '%s\n' "${WEFT_PACKAGES[@]}")
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then return 0; fi
  local missing=() p
  for p in "${WEFT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
      missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
      if command -v sudo >/dev/null 2>&1; then sudo=(sudo); else
        weft_say "weft: error: these Debian packages are missing and I am not root (and there is no sudo):"
        weft_say "  ${missing[*]}"
        weft_say "Install them with: apt-get install ${missing[*]}"
        return 1
      fi
    fi
    weft_say "weft: installing Debian packages: ${missing[*]}"
    if ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 ||
       ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2; then
      weft_say "weft: error: could not install: ${missing[*]} (is the Debian mirror reachable?)"
      return 1
    fi
  fi
  mkdir -p "$WEFT_ROOT/build"
  printf '%s\n' "$want" >"$stamp"
}

# weft_build DIR [meson options...]: configure once, then rebuild what changed.
weft_build() {
  local dir=$1; shift
  if [ ! -f "$dir/build.ninja" ]; then
    weft_say "weft: configuring $dir (first build takes a minute or two)"
    local log
    log=$(meson setup "$dir" "$WEFT_ROOT" "$@" 2>&1) || {
      printf '%s\n' "$log" >&2
      weft_say "weft: error: meson setup failed"
      return 1
    }
  fi
  local out
  if ! out=$(ninja -C "$dir" 2>&1); then
    printf '%s\n' "$out" >&2
    weft_say "weft: error: the build failed"
    return 1
  fi
}
