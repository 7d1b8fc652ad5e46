#!/usr/bin/env sh
# Print the uncompressed size of IMAGE (and of what it adds to BASE) as BUILDER's inspect reports it:
#   hack/image-size.sh BUILDER IMAGE [BASE]
set -eu
builder=$1 image=$2 base=${3:-}

size() {
  case "$builder" in
    buildah) buildah images --format '{{.Size}}' "$1" | head -n 1 ;;  # buildah only reports it rounded
    *) "$builder" image inspect --format '{{.Size}}' "$1" | awk '{ printf "%.1f MB\n", $1 / 1000000 }' ;;
  esac
}

line="image $image: $(size "$image") uncompressed"
if [ -n "$base" ] && base_size=$(size "$base" 2>/dev/null) && [ -n "$base_size" ]; then
  line="$line, of which the base $base is $base_size"
fi
echo "$line"
