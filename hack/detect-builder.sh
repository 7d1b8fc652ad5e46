#!/usr/bin/env sh
# Print the first usable container builder: docker (only when its engine answers), podman, buildah.
# `make image BUILDER=...` skips this.
for builder in docker podman buildah; do
  command -v "$builder" >/dev/null 2>&1 || continue
  # a docker CLI without a reachable engine cannot build: try the next one
  if [ "$builder" = docker ] && ! docker info >/dev/null 2>&1; then continue; fi
  echo "$builder"
  exit 0
done
echo "no container builder found: install docker, podman or buildah (or set BUILDER=)" >&2
exit 1
