# syntax=docker/dockerfile:1
# trusted-issuer operator image: the package, SoftHSM2 and the OpenSC tools (development profile), run as
# a non-root user. Build tools live only in the first stage; the final stage gets the finished virtualenv.
#
#   docker build -t trusted-issuer:0.1.0 .
#
# Intel SGX (crypto-api-toolkit's libp11sgx.so) or another vendor's PKCS#11 module is not in this image:
# build FROM it and add the module, or mount the module from a volume (see charts/trusted-issuer).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
# gcc and headers only in case a dependency has no wheel for this platform (python-pkcs11 builds with Cython).
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/trusted-issuer
ENV PATH=/opt/trusted-issuer/bin:$PATH PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY issuer ./issuer
# pip compiles the bytecode here: the read-only image never writes it at run time.
RUN pip install . \
 && pip uninstall -y pip setuptools wheel

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="trusted-issuer" \
      org.opencontainers.image.description="cert-manager external issuer whose CA key lives only inside a PKCS#11 token" \
      org.opencontainers.image.licenses="Apache-2.0"
# softhsm2: the development token (softhsm profile); opensc: pkcs11-tool, to inspect any token.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends softhsm2 opensc \
 && rm -rf /var/lib/apt/lists/* \
 && python -m pip uninstall -y pip setuptools wheel \
 && groupadd --system --gid 10001 trusted-issuer \
 && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin trusted-issuer
COPY --from=build /opt/trusted-issuer /opt/trusted-issuer
# The root filesystem is read-only in the chart: no bytecode writes, HOME on the /tmp emptyDir.
ENV PATH=/opt/trusted-issuer/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
# Numeric, so the kubelet can check runAsNonRoot without reading /etc/passwd.
USER 10001:10001
EXPOSE 8080 9402
ENTRYPOINT ["trusted-issuer"]
CMD ["run", "--liveness", "http://0.0.0.0:8080/healthz"]
