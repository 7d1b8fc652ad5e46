# syntax=docker/dockerfile:1
# Keyplane operator image: `docker build -t keyplane:dev .` (make image).
# The lxml and xmlsec manylinux wheels bundle libxml2, libxslt, xmlsec1 and OpenSSL (their extension
# modules link only against glibc), so the runtime stage needs no extra system packages.
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/keyplane
ENV PATH=/opt/keyplane/bin:$PATH
WORKDIR /src
COPY pyproject.toml constraints.txt README.md* LICENSE* ./
COPY operator/ operator/
# Pinned versions (constraints.txt); wheels only for lxml/xmlsec: a source build would need libxmlsec1-dev.
RUN pip install --only-binary=lxml,xmlsec -c constraints.txt . \
 && python -c "import lxml.etree, xmlsec, keyplane.cli, keyplane.health; keyplane.health.health_scripts()" \
 && keyplane --version

FROM ${PYTHON_IMAGE}
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
