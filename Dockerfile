# Keyplane operator image: `make image` (BUILDER=docker|podman|buildah, BASE_IMAGE=...), see docs/install.md.
# Plain Dockerfile syntax, no `# syntax=` line: BuildKit would pull a frontend image for it (fails
# air-gapped), and podman and buildah build this file as docker does.
# The lxml and xmlsec manylinux wheels bundle libxml2, libxslt, xmlsec1 and OpenSSL (their extension
# modules link only against glibc), so the runtime stage needs no extra system packages.
# BASE_IMAGE: a Debian-based image with python3 (3.11 or newer) and its venv module; where no registry
# is reachable, hack/image-base.sh makes one from the Debian archive.
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
# python3: Debian's python3 package has no `python` command (that is python-is-python3).
RUN python3 -m venv /opt/keyplane
ENV PATH=/opt/keyplane/bin:$PATH
WORKDIR /src
COPY pyproject.toml constraints.txt README.md* LICENSE* ./
COPY operator/ operator/
# Pinned versions (constraints.txt); wheels only for lxml/xmlsec: a source build would need libxmlsec1-dev.
# pip compiles every module to bytecode here, so the read-only root never needs a __pycache__ write and
# the operator starts without compiling (its imports take about a third of the time from source).
RUN python3 -m pip install --only-binary=lxml,xmlsec -c constraints.txt . \
 && python3 -c "import lxml.etree, xmlsec, keyplane.cli, keyplane.health; keyplane.health.health_scripts()" \
 && keyplane --version
# What the operator never runs (measured sizes in docs/install.md):
# - pip and setuptools: nothing is installed at run time;
# - kubernetes/aio, where a constraint brings the kubernetes client back (it is a test-only dependency):
#   `import kubernetes` never loads it;
# - Cython and C sources and headers (lxml's includes) and the packages' own test suites.
RUN python3 -m pip uninstall --yes --quiet pip setuptools \
 && site=$(python3 -c "import sysconfig; print(sysconfig.get_path('purelib'))") \
 && rm -rf "$site/kubernetes/aio" "$site/lxml/includes" \
 && find "$site" -mindepth 2 -maxdepth 2 -type d -name tests -prune -exec rm -rf {} + \
 && find "$site" -type f \( -name '*.pyx' -o -name '*.pxd' -o -name '*.pxi' -o -name '*.c' -o -name '*.h' \) -delete \
 && python3 -c "import importlib.util, kopf, lxml.etree, xmlsec, keyplane.handlers; \
                 importlib.util.find_spec('kubernetes') and __import__('kubernetes.config')" \
 && keyplane crds >/dev/null

FROM ${BASE_IMAGE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="keyplane" \
      org.opencontainers.image.description="Declarative SAML/OIDC SSO and SCIM for Kubernetes (Kopf operator)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 65532 keyplane \
 && useradd --system --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
            --shell /usr/sbin/nologin keyplane
COPY --from=builder /opt/keyplane /opt/keyplane
ENV PATH=/opt/keyplane/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
# Numeric, so Kubernetes can verify runAsNonRoot without resolving a user name.
USER 65532:65532
WORKDIR /tmp
# Kopf liveness endpoint (KEYPLANE_LIVENESS_ENDPOINT, default http://0.0.0.0:8080/healthz).
EXPOSE 8080
ENTRYPOINT ["keyplane"]
CMD ["run"]
