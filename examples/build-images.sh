#!/usr/bin/env bash
# Builds the example and test images locally, FROM scratch with Debian's busybox-static:
# no registry is needed. Rebuilds only what is missing unless FORCE=1.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
build() {  # build TAG DIR
    if [ "${FORCE:-0}" = 1 ] || ! docker image inspect "$1" >/dev/null 2>&1; then
        out=$(DOCKER_BUILDKIT=0 docker build -q -t "$1" "$2" 2>&1) || { echo "$out" >&2; exit 1; }
        echo "built $1"
    fi
}
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
cp /bin/busybox "$ctx/busybox"
cp "$here/images/busybox/Dockerfile" "$ctx/Dockerfile"
build kade/busybox:latest "$ctx"
build kade/site:1 "$here/images/site"
docker tag kade/site:1 kade/site:latest
# A second version of the site, for rolling updates.
sctx=$(mktemp -d)
cp -r "$here/images/site/." "$sctx/"
sed -i 's/version 1/version 2/' "$sctx/index.html"
build kade/site:2 "$sctx"
rm -rf "$sctx"
