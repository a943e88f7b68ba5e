#!/usr/bin/env bash
# felhom-agent build entry point.
#   ./build.sh          static x86_64 musl release binary (prints its path and size)
#   ./build.sh test     fmt check, clippy with -D warnings, and the whole test suite
#   ./build.sh bench    the benchmark (tests/bench): builds the node binary, then prints
#                       one table of floors, targets and measurements (target/bench.json)
#   ./build.sh fuzz     the randomized parser tests with many more cases
#   ./build.sh soak     the crash soak with many more kills (prints seed, kills, result)
#   ./build.sh deb      the Debian package of the static binary, checked with lintian
#   ./build.sh package BIN DIR [DOCBIN]
#                       the Debian package of any binary BIN (no lintian), into DIR;
#                       tests/it/deb.rs uses it with the test build
set -euo pipefail
cd "$(dirname "$0")"

target=x86_64-unknown-linux-musl
# The binary is copied onto every node; keep it small. See build_static for what
# happens when it is not.
max_bytes=$((3 * 1024 * 1024))

# Runs a command as root: directly when we are root, through sudo when sudo works
# without a password; otherwise prints the command and fails.
as_root() {
  if [[ $(id -u) == 0 ]]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo "$@"
  else
    echo "build.sh: this needs root; run it yourself, then ./build.sh again:" >&2
    echo "  sudo $*" >&2
    exit 1
  fi
}

# The Rust standard library for the musl target.
ensure_musl_target() {
  if [[ -d "$(rustc --print sysroot)/lib/rustlib/$target" ]]; then
    return
  fi
  if ! command -v rustup >/dev/null 2>&1; then
    echo "build.sh: the $target standard library is missing and rustup is not here" >&2
    exit 1
  fi
  rustup target add "$target"
}

# Installs the Debian packages named after each command that is missing, e.g.
# `ensure_apt lintian:lintian dpkg-parsechangelog:dpkg-dev`.
ensure_apt() {
  local pair packages=()
  for pair in "$@"; do
    if ! command -v "${pair%%:*}" >/dev/null 2>&1; then
      packages+=("${pair#*:}")
    fi
  done
  if ((${#packages[@]} == 0)); then
    return
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "build.sh: ${packages[*]} missing; install them with your package manager" >&2
    exit 1
  fi
  echo "build.sh: installing ${packages[*]}" >&2
  # A fresh machine may have no package lists yet: update only when the install
  # cannot find a package.
  if ! as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y "${packages[@]}"; then
    as_root apt-get update
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y "${packages[@]}"
  fi
}

# aws-lc-sys (rustls' crypto provider) is C, compiled with the cc crate, which for
# this target looks for x86_64-linux-musl-gcc and then musl-gcc: the host gcc would
# compile against glibc's headers. Debian's musl-tools provides musl-gcc, a wrapper
# around the host gcc with musl's headers and libc. Nothing else is needed: the
# crate builds with plain cc (no cmake), and its bindings for this target ship
# pre-generated (no clang).
ensure_musl_cc() {
  if [[ -n ${CC_x86_64_unknown_linux_musl:-} ]]; then
    return
  fi
  local cc
  for cc in x86_64-linux-musl-gcc musl-gcc; do
    if command -v "$cc" >/dev/null 2>&1; then
      export CC_x86_64_unknown_linux_musl=$cc
      return
    fi
  done
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "build.sh: no musl C compiler (musl-gcc); install musl's gcc wrapper" \
      "with your package manager, or set CC_x86_64_unknown_linux_musl" >&2
    exit 1
  fi
  ensure_apt musl-gcc:musl-tools
  export CC_x86_64_unknown_linux_musl=musl-gcc
}

# Exit 0 when the ELF file has a PT_INTERP program header, i.e. needs a dynamic
# loader. Reads the header with od (coreutils, so always present, unlike file or
# readelf): e_phoff is 8 bytes at offset 32, e_phentsize and e_phnum 2 bytes at 54
# and 56, and each program header starts with its 4-byte p_type (PT_INTERP = 3).
# od reads numbers in host byte order, which is the ELF's (x86_64 on x86_64).
has_interp() {
  local f=$1 magic class phoff phentsize phnum i type
  magic=$(od -An -tx1 -N4 "$f" | tr -d ' \n')
  class=$(od -An -tu1 -j4 -N1 "$f" | tr -d ' \n')
  if [[ $magic != 7f454c46 || $class != 2 ]]; then
    echo "build.sh: $f is not a 64-bit ELF file" >&2
    exit 1
  fi
  phoff=$(od -An -tu8 -j32 -N8 "$f" | tr -d ' \n')
  phentsize=$(od -An -tu2 -j54 -N2 "$f" | tr -d ' \n')
  phnum=$(od -An -tu2 -j56 -N2 "$f" | tr -d ' \n')
  for ((i = 0; i < phnum; i++)); do
    type=$(od -An -tu4 -j$((phoff + i * phentsize)) -N4 "$f" | tr -d ' \n')
    if [[ $type == 3 ]]; then
      return 0
    fi
  done
  return 1
}

# Static means: no PT_INTERP, so the kernel runs the binary without ld.so, and then
# nothing could load a shared library for it anyway (Rust's musl target links a
# static PIE, which has a PT_DYNAMIC for its own relocations but no interpreter).
# readelf, when present, also confirms that there is no DT_NEEDED entry. Last, the
# binary runs `--version` with an empty environment: that it works at all on this
# machine proves the check above right in practice.
check_static() {
  local bin=$1 rc=0
  if has_interp "$bin"; then
    echo "build.sh: $bin asks for a dynamic loader (PT_INTERP): not static" >&2
    exit 1
  fi
  if command -v readelf >/dev/null 2>&1 && readelf -dW "$bin" | grep -q '(NEEDED)'; then
    echo "build.sh: $bin needs shared libraries:" >&2
    readelf -dW "$bin" | grep '(NEEDED)' >&2
    exit 1
  fi
  local version
  version=$(env -i "$bin" --version 2>&1) || rc=$?
  if ((rc != 0)); then
    echo "build.sh: $bin --version does not run (exit $rc)" >&2
    exit 1
  fi
  # The node binary must not carry the simulator; --version says which build it is.
  if [[ $version != *"(node build)"* ]]; then
    echo "build.sh: $bin is not a node build: $version" >&2
    exit 1
  fi
  echo "static: no interpreter, no shared libraries, runs with an empty environment"
}

build_static() {
  ensure_musl_target
  ensure_musl_cc
  # Without the default `sim` feature: a node has no use for the simulated Proxmox
  # node or the demo, and leaving them out keeps rustls' server side out too.
  #
  # Rust links musl binaries as static PIE, so the binary relocates itself at start
  # and keeps address-space randomisation. Its relative relocations take 135 KiB as
  # plain RELA entries; packed as RELR (`-z pack-relative-relocs`, GNU ld >= 2.38,
  # applied by the self-relocation of the musl that Rust bundles) they take 1.4 KiB.
  # check_static runs the result, which proves the relocations are applied.
  local flags="-C link-arg=-Wl,-z,pack-relative-relocs"
  # No .eh_frame_hdr (47 KiB): release builds abort on panic, so nothing unwinds; the
  # index only speeds up the backtrace a panic may print, and a stripped binary's
  # backtrace names no function anyway. Without it a panic prints its message and an
  # empty backtrace, then aborts as before.
  flags+=" -C link-arg=-Wl,--no-eh-frame-hdr"
  # Identical code folding merges functions whose machine code is the same (generic
  # instances mostly): 22 KiB less. GNU ld cannot do it; the lld that every rustup
  # toolchain ships (rust-lld, behind its gcc-ld/ld.lld wrapper) can, so use it when
  # it is there. Both link the same objects; the result is checked the same way.
  local gcc_ld
  gcc_ld="$(rustc --print sysroot)/lib/rustlib/$(rustc -vV | sed -n 's/^host: //p')/bin/gcc-ld"
  if [[ -x $gcc_ld/ld.lld ]]; then
    flags+=" -C link-arg=-B$gcc_ld -C link-arg=-fuse-ld=lld -C link-arg=-Wl,--icf=all"
  fi
  export CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_RUSTFLAGS="$flags"
  cargo build --release --locked --no-default-features --target "$target"
  local bin=target/$target/release/felhom-agent bytes
  bytes=$(stat -c %s "$bin")
  echo "binary: $bin"
  awk -v b="$bytes" 'BEGIN { printf "size: %d bytes (%.2f MiB)\n", b, b / 1048576 }'
  check_static "$bin"
  if ((bytes >= max_bytes)); then
    # What takes the space: `nm --size-sort -S -C` on an unstripped build
    # (CARGO_PROFILE_RELEASE_STRIP=false). Code generic over an answer type is
    # carried once per type: keep generics to the decoding (src/pve/request.rs).
    echo "build.sh: $bin is $bytes bytes, over the 3 MiB budget" >&2
    exit 1
  fi
}

# The package's version is the crate's; the changelog's newest entry must say the same.
crate_version() {
  sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1
}

# package_deb BIN DIR [DOCBIN]: builds DIR/felhom-agent_<version>_amd64.deb around BIN
# with dpkg-deb alone, and prints its path. The man page and the bash completion are
# rendered by DOCBIN (default BIN), a development build of the same source: the node
# binary leaves their renderers out to stay within its size budget. The maintainer is
# DEB_MAINTAINER when set. Files get the changelog's date, so the same inputs give the
# same package.
package_deb() {
  local bin=$1 out=$2 docbin=${3:-$1} version changed stage doc deb
  version=$(crate_version)
  changed=$(sed -n '1s/^felhom-agent (\([^)]*\)).*/\1/p' contrib/debian/changelog)
  if [[ $changed != "$version" ]]; then
    echo "build.sh: contrib/debian/changelog's newest entry is $changed, Cargo.toml says $version" >&2
    exit 1
  fi
  export SOURCE_DATE_EPOCH
  SOURCE_DATE_EPOCH=$(date -d "$(sed -n 's/^ -- .*>  //p' contrib/debian/changelog | head -n 1)" +%s)
  stage=$(mktemp -d)
  chmod 0755 "$stage"
  # shellcheck disable=SC2064 # expand now: $stage is local
  trap "rm -rf '$stage'; trap - RETURN" RETURN
  umask 022
  install -D -m 0755 "$bin" "$stage/usr/bin/felhom-agent"
  # The unit and the runit script name /usr/local/bin, where a hand install puts it.
  sed 's|/usr/local/bin/felhom-agent|/usr/bin/felhom-agent|' contrib/felhom-agent.service \
    | install -D -m 0644 /dev/stdin "$stage/usr/lib/systemd/system/felhom-agent.service"
  install -D -m 0644 contrib/debian/config.json "$stage/etc/felhom-agent/config.json"
  install -d -m 0755 "$stage/usr/share/man/man8" "$stage/usr/share/bash-completion/completions"
  "$docbin" --generate man | gzip -9n >"$stage/usr/share/man/man8/felhom-agent.8.gz"
  "$docbin" --generate complete-bash >"$stage/usr/share/bash-completion/completions/felhom-agent"
  install -D -m 0644 contrib/debian/lintian-overrides "$stage/usr/share/lintian/overrides/felhom-agent"

  doc=$stage/usr/share/doc/felhom-agent
  install -d -m 0755 "$doc/examples/runit/log"
  gzip -9n <contrib/debian/changelog >"$doc/changelog.gz"
  gzip -9n <README.md >"$doc/README.md.gz"
  # The machine-readable copyright format, with LICENSE as its Expat text.
  {
    echo "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/"
    echo "Upstream-Name: felhom-agent"
    echo "Comment: The binary is statically linked with the Rust crates in Cargo.lock,"
    echo " each under its own license (MIT, Apache-2.0, ISC, BSD or OpenSSL-style)."
    echo
    echo "Files: *"
    sed -n 's/^Copyright (c) /Copyright: /p' LICENSE
    echo "License: Expat"
    sed -n '/^Permission is hereby granted/,$p' LICENSE | sed 's/^$/./; s/^/ /'
  } >"$doc/copyright"
  sed 's|/usr/local/bin/felhom-agent|/usr/bin/felhom-agent|' contrib/runit/run >"$doc/examples/runit/run"
  cp contrib/runit/log/run "$doc/examples/runit/log/run"
  chmod 0755 "$doc/examples/runit/run" "$doc/examples/runit/log/run"
  cp contrib/config.example.json contrib/desired.example.json \
    contrib/grafana-dashboard.json contrib/prometheus-alerts.yml "$doc/examples/"
  chmod 0644 "$doc"/examples/*.*

  install -d -m 0755 "$stage/DEBIAN"
  sed -e "s/@VERSION@/$version/" \
    -e "s|@MAINTAINER@|${DEB_MAINTAINER:-felhom-agent developers <maintainers@felhom.invalid>}|" \
    -e "s/@INSTALLED_SIZE@/$(du -sk --exclude=DEBIAN "$stage" | cut -f1)/" \
    contrib/debian/control >"$stage/DEBIAN/control"
  echo /etc/felhom-agent/config.json >"$stage/DEBIAN/conffiles"
  # Checksums of every file but the conffiles, which dpkg tracks itself (as dh_md5sums).
  (cd "$stage" && find . -type f ! -path './DEBIAN/*' ! -path './etc/*' -printf '%P\n' \
    | LC_ALL=C sort | xargs -d '\n' md5sum) >"$stage/DEBIAN/md5sums"
  install -m 0755 contrib/debian/postinst contrib/debian/prerm contrib/debian/postrm "$stage/DEBIAN/"
  chmod 0644 "$stage/DEBIAN/control" "$stage/DEBIAN/conffiles" "$stage/DEBIAN/md5sums"
  find "$stage" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +

  mkdir -p "$out"
  deb=$out/felhom-agent_${version}_amd64.deb
  dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >/dev/null
  echo "$deb"
}

# The package of the static binary (build_static first), checked with lintian: no
# error, and no warning that is not overridden with its reason in
# contrib/debian/lintian-overrides.
build_deb() {
  ensure_apt dpkg-deb:dpkg dpkg-parsechangelog:dpkg-dev lintian:lintian
  local deb
  if [[ $(dpkg-parsechangelog -l contrib/debian/changelog -S Version) != "$(crate_version)" ]]; then
    echo "build.sh: contrib/debian/changelog does not start with version $(crate_version)" >&2
    exit 1
  fi
  # The development build (the one `cargo test` makes) renders the man page.
  cargo build --locked
  deb=$(package_deb "target/$target/release/felhom-agent" target/deb target/debug/felhom-agent)
  echo "package: $deb"
  dpkg-deb --info "$deb" | sed -n 's/^ \(Package\|Version\|Installed-Size\):/  \1:/p'
  lintian --fail-on error,warning "$deb"
  echo "lintian: no errors or warnings"
}

cmd=${1:-build}
case "$cmd" in
  build)
    build_static
    ;;
  test)
    cargo fmt --check
    cargo clippy --all-targets -- -D warnings
    cargo clippy --no-default-features -- -D warnings
    cargo test --all-targets
    # The shipped binary: static and under budget. It needs musl-gcc, which build.sh
    # installs only as root; elsewhere (and outside CI) the check is skipped, loudly.
    # The package of it, checked with lintian, likewise.
    if [[ ${CI:-} == true || $(id -u) == 0 ]] || command -v musl-gcc >/dev/null 2>&1; then
      build_static
      build_deb
    else
      echo "build.sh: skipping the static build and package checks (needs musl-gcc; run ./build.sh as root once)" >&2
    fi
    ;;
  bench)
    # tests/bench: one table of every scenario against its floor or target, also
    # written to target/bench.json. The thread, memory and start-up scenarios run the
    # static node binary (its allocator is what runs on nodes), so build it first where
    # that can be done; the bench reports the binary's size itself, so a binary over
    # budget is a row marked NOT MET, not a stop.
    if [[ ${CI:-} == true || $(id -u) == 0 ]] || command -v musl-gcc >/dev/null 2>&1; then
      if ! (build_static); then
        echo "build.sh: the static build check failed (above); benchmarking anyway" >&2
      fi
    else
      echo "build.sh: not building the static node binary (needs musl-gcc; run ./build.sh as root once); the bench runs its own release binary instead" >&2
    fi
    cargo bench --bench bench
    ;;
  soak)
    # tests/it/soak.rs: the real agent under seeded faults, killed with SIGKILL again
    # and again; the node's audit must stay clean and the fleet must converge.
    # FELHOM_SOAK_SEED reruns a seed; FELHOM_SOAK_KILLS sets the kills (default 200).
    FELHOM_SOAK_KILLS=${FELHOM_SOAK_KILLS:-200} cargo test --release --test it soak -- --nocapture
    ;;
  fuzz)
    # The same seeded properties `./build.sh test` runs (tests named fuzz_*), with
    # FELHOM_FUZZ_ITERS cases each instead of the default 2,000. Set FELHOM_FUZZ_SEED
    # to rerun a failure.
    FELHOM_FUZZ_ITERS=${FELHOM_FUZZ_ITERS:-200000} cargo test --release --lib fuzz_ -- --nocapture
    ;;
  deb)
    build_static
    build_deb
    ;;
  package)
    if (($# < 3 || $# > 4)); then
      echo "usage: ./build.sh package BIN DIR [DOCBIN]" >&2
      exit 2
    fi
    package_deb "$2" "$3" "${4:-$2}"
    ;;
  *)
    echo "usage: ./build.sh [build|test|bench|fuzz|soak|deb|package BIN DIR [DOCBIN]]" >&2
    exit 2
    ;;
esac
