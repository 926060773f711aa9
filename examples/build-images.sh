#!/usr/bin/env bash
# Builds the example and test images locally, FROM scratch with Debian's busybox-static:
# no registry is needed. An image is built only when what it is made of changed: each one
# carries the hash of its build context (and of its base image) in the label
# kade-examples.content-hash, compared first: running this again costs a few
# `docker image inspect`s. FORCE=1 rebuilds everything.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
hash_of() {  # hash_of DIR [MORE]: the files of a build context (names and contents), and MORE
    { (cd "$1" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum); echo "${2:-}"; } \
        | sha256sum | cut -c1-64
}
built=""  # the content hash of the image `build` saw last
build() {  # build TAG DIR [MORE]
    built=$(hash_of "$2" "${3:-}")
    have=$(docker image inspect -f '{{index .Config.Labels "kade-examples.content-hash"}}' "$1" 2>/dev/null || true)
    if [ "${FORCE:-0}" = 1 ] || [ "$have" != "$built" ]; then
        out=$(DOCKER_BUILDKIT=0 docker build -q --label "kade-examples.content-hash=$built" -t "$1" "$2" 2>&1) \
            || { echo "$out" >&2; exit 1; }
        echo "built $1"
    fi
}
ctx=$(mktemp -d)
sctx=$(mktemp -d)
trap 'rm -rf "$ctx" "$sctx"' EXIT
cp /bin/busybox "$ctx/busybox"
cp "$here/images/busybox/Dockerfile" "$ctx/Dockerfile"
build kade/busybox:latest "$ctx"
base=$built  # the site is built FROM it: a new busybox means a new site
build kade/site:1 "$here/images/site" "$base"
if [ "$(docker image inspect -f '{{.Id}}' kade/site:latest 2>/dev/null || true)" != \
     "$(docker image inspect -f '{{.Id}}' kade/site:1)" ]; then
    docker tag kade/site:1 kade/site:latest
fi
# A second version of the site, for rolling updates.
cp -r "$here/images/site/." "$sctx/"
sed -i 's/version 1/version 2/' "$sctx/index.html"
build kade/site:2 "$sctx" "$base"
