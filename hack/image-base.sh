#!/usr/bin/env bash
# Make a Debian base image with Python 3 from the Debian archive alone, for machines that reach a Debian
# mirror and PyPI but no container registry (so `python:3.11-slim-bookworm` cannot be pulled).
#
#   sudo hack/image-base.sh [NAME]      # default localhost/keyplane-base:bookworm
#   make image BASE_IMAGE=localhost/keyplane-base:bookworm
#
# Needs root and debootstrap; imports the root filesystem with $BUILDER (podman, buildah or docker).
# Environment: BUILDER, SUITE (bookworm), MIRROR (http://deb.debian.org/debian).
set -euo pipefail

name=${1:-localhost/keyplane-base:bookworm}
here=$(cd "$(dirname "$0")" && pwd)
builder=${BUILDER:-$("$here/detect-builder.sh")}
suite=${SUITE:-bookworm}
mirror=${MIRROR:-http://deb.debian.org/debian}

[ "$(id -u)" = 0 ] || { echo "image-base: debootstrap needs root" >&2; exit 1; }
command -v debootstrap >/dev/null || { echo "image-base: apt-get install debootstrap" >&2; exit 1; }

rootfs=$(mktemp -d /var/tmp/keyplane-base.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT

# python3-venv brings the pip and setuptools wheels ensurepip installs into the image's venv, so the
# base needs no python3-pip of its own.
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates "$suite" "$rootfs" "$mirror"

# A host behind a TLS-intercepting proxy trusts the proxy's CA through extra certificates in its system
# bundle; pip inside the build goes through the same proxy and must trust it too. Copy the certificates
# the host trusts beyond Debian's stock set into the base (nothing on a normal machine). Only this local
# base gets them: the Dockerfile stays free of proxies and CAs.
extra=$(python3 - /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt" \
                  "$rootfs/usr/local/share/ca-certificates" <<'PY'
import re
import sys

pem = re.compile(r"-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----", re.S)
def certificates(path):
    try:
        text = open(path, encoding="ascii", errors="replace").read()
    except FileNotFoundError:
        return {}
    return {"".join(body.split()): body for body in pem.findall(text)}
host, base = certificates(sys.argv[1]), certificates(sys.argv[2])
extra = [body for key, body in host.items() if key not in base]
for index, body in enumerate(extra):
    with open(f"{sys.argv[3]}/host-extra-{index}.crt", "w", encoding="ascii") as out:
        out.write(f"-----BEGIN CERTIFICATE-----{body}-----END CERTIFICATE-----\n")
print(len(extra))
PY
)
if [ "$extra" -gt 0 ]; then
  echo "image-base: the host trusts $extra CA certificate(s) beyond Debian's; adding them to the base"
  chroot "$rootfs" update-ca-certificates >/dev/null
  # pip then verifies against the system bundle (with the added CAs), not a bundle of its own
  printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' > "$rootfs/etc/pip.conf"
fi

# What a container never uses: package caches and lists, man pages, docs (copyright files stay).
rm -rf "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
       "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/var/log/*.log
find "$rootfs/usr/share/doc" -type f ! -name copyright -delete

case "$builder" in
  buildah)
    container=$(buildah from scratch)
    tar -C "$rootfs" -cf "$rootfs.tar" . && trap 'rm -rf "$rootfs" "$rootfs.tar"' EXIT
    buildah add "$container" "$rootfs.tar" / >/dev/null  # a local tar archive is unpacked
    buildah config --cmd python3 "$container"
    buildah commit --rm "$container" "$name" >/dev/null ;;
  *)
    tar -C "$rootfs" -c . | "$builder" import --change 'CMD ["python3"]' - "$name" >/dev/null ;;
esac
echo "image-base: $name ($suite, $(chroot "$rootfs" python3 --version))"
