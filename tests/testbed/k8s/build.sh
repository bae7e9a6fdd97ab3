#!/usr/bin/env bash
# Build (once) kube-apiserver and kube-controller-manager from Debian's `kubernetes` source
# package and cache them together with an etcd binary. Idempotent: with the cache present it
# returns in well under a second; a cache from before the controller-manager was added only
# gets the missing binary built.
#
# Cache layout: ${DRIFTLINE_CACHE_DIR:-$HOME/.cache/driftline}/k8s/<source-version>/bin/
#   kube-apiserver, kube-controller-manager, etcd
# Prints the cache's bin directory as the last line of stdout.
# Exit status 3 means "cannot be built on this machine" (no apt, no deb-src, no root for the
# build dependencies); any other failure is a real error.
set -euo pipefail

KUBE_DEB_VERSION="${KUBE_DEB_VERSION:-1.20.5+really1.20.2-1.1+deb12u1}"
KUBE_UPSTREAM="${KUBE_DEB_VERSION%-*}"          # 1.20.5+really1.20.2
KUBE_GIT_VERSION="v${KUBE_UPSTREAM##*really}"   # v1.20.2
CACHE_ROOT="${DRIFTLINE_CACHE_DIR:-$HOME/.cache/driftline}/k8s"
KEY_DIR="$CACHE_ROOT/$KUBE_DEB_VERSION"
BIN_DIR="$KEY_DIR/bin"
APT_DIR="$CACHE_ROOT/apt"
START=$(date +%s)

log() { printf '[k8s-build %3ss] %s\n' "$(( $(date +%s) - START ))" "$*" >&2; }

# apt-get with a private deb-src list kept in the cache: /etc/apt stays untouched.
apt_src() {
  apt-get -o APT::Sandbox::User=root \
          -o Dir::Etc::SourceList=/dev/null -o Dir::Etc::SourceParts="$APT_DIR/sources.d" \
          -o Dir::State::Lists="$APT_DIR/lists" -o Dir::Cache="$APT_DIR/cache" "$@"
}

unavailable() { log "UNAVAILABLE: $*"; exit 3; }

KUBE_BINARIES=(kube-apiserver kube-controller-manager)

# The Kubernetes binaries not in the cache yet (etcd is checked by cache_ok).
missing_binaries() {
  local b
  for b in "${KUBE_BINARIES[@]}"; do [[ -x "$BIN_DIR/$b" ]] || echo "$b"; done
}

cache_ok() { [[ -x "$BIN_DIR/etcd" && -z "$(missing_binaries)" ]]; }

install_build_deps() {
  local missing=()
  command -v go >/dev/null || missing+=(golang-go)
  command -v dpkg-source >/dev/null || missing+=(dpkg-dev)
  command -v openssl >/dev/null || missing+=(openssl)
  command -v make >/dev/null || missing+=(make)
  command -v rsync >/dev/null || missing+=(rsync)
  command -v apt-get >/dev/null || unavailable "apt-get not found (a Debian system is needed)"
  if ((${#missing[@]})); then
    [[ $(id -u) == 0 ]] || unavailable "not root, cannot apt-get install ${missing[*]}"
    log "apt-get install ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >&2 \
      || { apt-get update >&2 && DEBIAN_FRONTEND=noninteractive \
             apt-get install -y --no-install-recommends "${missing[@]}" >&2; } \
      || unavailable "apt-get install ${missing[*]} failed"
  fi
  log "go: $(go version)"
}

setup_src_list() {
  mkdir -p "$APT_DIR/sources.d" "$APT_DIR/lists/partial" "$APT_DIR/cache/archives/partial"
  cat >"$APT_DIR/sources.d/debian-src.sources" <<'EOF'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  log "apt-get update (private deb-src list in $APT_DIR)"
  apt_src update -qq >&2 || unavailable "cannot reach the Debian deb-src archive"
}

# Download a binary .deb (no install, so no service gets started) and unpack it into $2.
fetch_deb() {
  local pkg=$1 dest=$2
  mkdir -p "$dest"
  (cd "$dest" && apt-get -o APT::Sandbox::User=root download -qq "$pkg" >&2 \
     || { apt-get update -qq >&2 && apt-get -o APT::Sandbox::User=root download -qq "$pkg" >&2; })
  ls "$dest"/"${pkg}"_*.deb >/dev/null 2>&1 || unavailable "apt-get download $pkg failed"
  dpkg-deb -x "$dest"/"${pkg}"_*.deb "$dest/root"
}

fetch_source() {
  local work=$1
  log "apt-get source kubernetes=$KUBE_DEB_VERSION"
  (cd "$work" && apt_src source -qq "kubernetes=$KUBE_DEB_VERSION" >&2) \
    || unavailable "apt-get source kubernetes=$KUBE_DEB_VERSION failed"
  SRC_DIR="$work/kubernetes-$KUBE_UPSTREAM"
  [[ -f "$SRC_DIR/go.mod" ]] || { log "source tree missing at $SRC_DIR"; exit 1; }
}

# Fix 1: reflect2 1.0.1 crashes with Go >= 1.18 (unexpected fault address in map iteration).
patch_reflect2() {
  local work=$1 vend="$SRC_DIR/vendor/github.com/modern-go/reflect2"
  log "vendoring reflect2 1.0.2 from golang-github-modern-go-reflect2-dev"
  fetch_deb golang-github-modern-go-reflect2-dev "$work/reflect2"
  local new="$work/reflect2/root/usr/share/gocode/src/github.com/modern-go/reflect2"
  [[ -f "$new/reflect2.go" ]] || { log "reflect2 sources not found in the .deb"; exit 1; }
  rm -rf "$vend" && mkdir -p "$vend"
  find "$new" -maxdepth 1 -type f \( -name '*.go' -o -name '*.s' -o -name LICENSE \) \
    ! -name '*_test.go' -exec cp {} "$vend/" \;
  sed -i 's#github.com/modern-go/reflect2 v1.0.1#github.com/modern-go/reflect2 v1.0.2#g' \
    "$SRC_DIR/go.mod" "$SRC_DIR/vendor/modules.txt"
}

build_binaries() {
  local work=$1 what
  what=$(missing_binaries | sed 's#^#cmd/#' | paste -sd' ')
  log "building $what ($KUBE_GIT_VERSION; cold: ~5 min on 2 cores)"
  (cd "$SRC_DIR" && env GOPROXY=off GOFLAGS=-mod=vendor GOCACHE="$work/gocache" \
      GOPATH="$work/gopath" KUBE_GIT_VERSION="$KUBE_GIT_VERSION" KUBE_GIT_TREE_STATE=clean \
      KUBE_GIT_MAJOR=1 KUBE_GIT_MINOR=20 \
      KUBE_GIT_COMMIT=0000000000000000000000000000000000000000 \
      make WHAT="$what" >&2)
}

install_cache() {
  local work=$1 built b
  mkdir -p "$BIN_DIR"
  if [[ ! -x "$BIN_DIR/etcd" ]]; then
    log "fetching etcd from Debian's etcd-server package"
    fetch_deb etcd-server "$work/etcd"
    install -m 0755 "$work/etcd/root/usr/bin/etcd" "$BIN_DIR/etcd"
  fi
  for b in $(missing_binaries); do
    built=$(find "$SRC_DIR/_output" -type f -name "$b" -perm -u+x | head -n1)
    [[ -n "$built" ]] || { log "$b binary not produced"; exit 1; }
    install -m 0755 "$built" "$BIN_DIR/$b.tmp"
    mv "$BIN_DIR/$b.tmp" "$BIN_DIR/$b"
  done
}

main() {
  if ! cache_ok; then
    mkdir -p "$CACHE_ROOT"
    # One build at a time: a second caller waits here, then finds the cache filled.
    exec 9>"$CACHE_ROOT/build.lock"
    if command -v flock >/dev/null && ! flock -n 9; then
      log "another build.sh is building into $KEY_DIR; waiting for it"
      flock 9
    fi
  fi
  if cache_ok; then
    log "cache hit: $BIN_DIR"
  else
    log "cache miss for kubernetes $KUBE_DEB_VERSION ($(missing_binaries | paste -sd' '));" \
        "building into $KEY_DIR"
    install_build_deps
    setup_src_list
    WORK=$(mktemp -d "$CACHE_ROOT/build.XXXXXX")
    trap 'chmod -R u+w "$WORK" 2>/dev/null; rm -rf "$WORK"' EXIT
    if [[ -n "$(missing_binaries)" ]]; then
      fetch_source "$WORK"
      patch_reflect2 "$WORK"
      build_binaries "$WORK"
    fi
    install_cache "$WORK"
  fi
  log "kube-apiserver: $("$BIN_DIR/kube-apiserver" --version)"
  log "kube-controller-manager: $("$BIN_DIR/kube-controller-manager" --version)"
  log "etcd: $("$BIN_DIR/etcd" --version | head -n1)"
  log "done in $(( $(date +%s) - START ))s"
  echo "$BIN_DIR"
}

main "$@"
