#!/usr/bin/env bash
# Build the images of the docker-compose tier on a machine that can pull none (no registry):
#   driftline-testbed/debian:bookworm   debootstrap of Debian bookworm (python3 3.11, venv,
#                                       git, nginx-light, postgresql-15, redis-server), imported
#   driftline-testbed/postgres:15       Dockerfile.postgres: stands in for postgres:15
#   driftline-testbed/redis:7           Dockerfile.redis: stands in for redis:7
#   driftline-airflow:0.1.0             ../../../Dockerfile.airflow, AIRFLOW_BASE=the Debian image
# into the daemon at $DOCKER_HOST (which must be running). docker-compose.yaml then runs them
# with DRIFTLINE_AIRFLOW_BASE / DRIFTLINE_POSTGRES_IMAGE / DRIFTLINE_REDIS_IMAGE set.
#
# Cache, like tests/testbed/k8s/build.sh: ${DRIFTLINE_CACHE_DIR:-$HOME/.cache/driftline}/compose/
#   <key>/images.tar   `docker save` of the four images; key = hash of this script, the
#                      Dockerfiles, requirements.txt and packs/requirements.txt
# A warm run `docker load`s it, then rebuilds driftline-airflow with --cache-from the loaded
# image: only the layers after the lock (the code, DAGs, packs) are built again.
# Exit status 3 means "cannot be built on this machine" (no docker, no debootstrap, not root).
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../../.." && pwd)"
SUITE=bookworm
MIRROR="${DRIFTLINE_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
PACKAGES=python3,python3-venv,git,ca-certificates,nginx-light,procps,postgresql-15,redis-server
BASE=driftline-testbed/debian:$SUITE
POSTGRES=driftline-testbed/postgres:15
REDIS=driftline-testbed/redis:7
AIRFLOW=driftline-airflow:0.1.0
CACHE_ROOT="${DRIFTLINE_CACHE_DIR:-$HOME/.cache/driftline}/compose"
KEY=$(cd "$ROOT" && cat tests/testbed/compose/{build.sh,Dockerfile.*,*-entrypoint.sh} \
        Dockerfile.airflow requirements.txt packs/requirements.txt | sha256sum | cut -c1-16)
KEY_DIR="$CACHE_ROOT/$KEY"
START=$(date +%s)
export DOCKER_BUILDKIT=0  # the classic builder: --cache-from works with `docker load`ed images

log() { printf '[compose-build %3ss] %s\n' "$(( $(date +%s) - START ))" "$*" >&2; }
unavailable() { log "UNAVAILABLE: $*"; exit 3; }

have_image() { docker image inspect "$1" >/dev/null 2>&1; }

build_base() {
  command -v debootstrap >/dev/null || unavailable "debootstrap not found (apt-get install debootstrap)"
  [[ $(id -u) == 0 ]] || unavailable "debootstrap needs root"
  local work
  work=$(mktemp -d "$CACHE_ROOT/rootfs.XXXXXX")
  # removed when this function returns; the trap clears itself (a RETURN trap is global: left
  # set, it would fire again when main returns, with $work out of scope, and fail the script)
  trap 'rm -rf "$work"; trap - RETURN' RETURN
  log "debootstrap $SUITE ($PACKAGES) from $MIRROR (cold: ~5 min)"
  debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$work/rootfs" "$MIRROR" \
    > "$work/debootstrap.log" 2>&1 || { tail -20 "$work/debootstrap.log" >&2; exit 1; }
  # The host's own CAs (/usr/local/share/ca-certificates), as the host trusts them: builds
  # behind a TLS-inspecting egress proxy then reach PyPI as the host does.
  if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    cp /usr/local/share/ca-certificates/*.crt "$work/rootfs/usr/local/share/ca-certificates/"
    chroot "$work/rootfs" update-ca-certificates >/dev/null
  fi
  # no downloaded .debs or package lists in the image
  rm -rf "$work"/rootfs/var/cache/apt/archives/*.deb "$work"/rootfs/var/lib/apt/lists/*
  log "docker import $BASE"
  tar -C "$work/rootfs" --numeric-owner -c . \
    | docker import --change 'CMD ["bash"]' \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        - "$BASE" >/dev/null
}

# docker build with the host's network (the lock is installed from PyPI during the build).
build() {
  local tag=$1 dockerfile=$2 context=$3; shift 3
  log "docker build $tag"
  docker build -q --network host -f "$dockerfile" -t "$tag" "$@" "$context" >/dev/null
}

main() {
  command -v docker >/dev/null || unavailable "no docker client (apt-get install docker.io)"
  docker version >/dev/null 2>&1 || unavailable "no docker daemon at ${DOCKER_HOST:-the default socket}"
  mkdir -p "$CACHE_ROOT"
  exec 9>"$CACHE_ROOT/build.lock"
  flock 9
  if [[ -s "$KEY_DIR/images.tar" ]] && ! have_image "$AIRFLOW"; then
    log "cache hit: docker load $KEY_DIR/images.tar"
    docker load -q -i "$KEY_DIR/images.tar" >/dev/null
  fi
  have_image "$BASE" || build_base
  have_image "$POSTGRES" || build "$POSTGRES" "$HERE/Dockerfile.postgres" "$HERE" \
    --build-arg BASE="$BASE"
  have_image "$REDIS" || build "$REDIS" "$HERE/Dockerfile.redis" "$HERE" --build-arg BASE="$BASE"
  local cache_from=()
  have_image "$AIRFLOW" && cache_from=(--cache-from "$AIRFLOW")
  build "$AIRFLOW" "$ROOT/Dockerfile.airflow" "$ROOT" --build-arg AIRFLOW_BASE="$BASE" \
    "${cache_from[@]}"
  if [[ ! -s "$KEY_DIR/images.tar" ]]; then
    log "docker save into $KEY_DIR/images.tar"
    rm -rf "$CACHE_ROOT"/*/  # older keys
    mkdir -p "$KEY_DIR"
    docker save "$BASE" "$POSTGRES" "$REDIS" "$AIRFLOW" -o "$KEY_DIR/images.tar.tmp"
    mv "$KEY_DIR/images.tar.tmp" "$KEY_DIR/images.tar"
  fi
  log "done in $(( $(date +%s) - START ))s"
  echo "$BASE $POSTGRES $REDIS $AIRFLOW"
}

main "$@"
