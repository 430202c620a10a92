#!/usr/bin/env bash
# Installs what trusted-issuer needs on a fresh Debian/Ubuntu machine: the system packages (as root;
# otherwise it says exactly what to install) and a virtualenv with the package, its test tools and the
# sandbox API server (sandbox/, a distribution of its own: the demo's, tests' and benchmarks' fake cluster).
set -euo pipefail

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
# SoftHSM2 is the default token; a TPM 2.0 simulator behind tpm2-pkcs11 and opencryptoki's soft token
# are the two others the token tiers run on (make test-tokens).
APT_PACKAGES=(softhsm2 opensc openssl
  swtpm swtpm-tools tpm2-abrmd tpm2-tools libtpm2-pkcs11-1 libtpm2-pkcs11-tools libtss2-tcti-tabrmd0 dbus
  opencryptoki)

missing=()
command -v softhsm2-util >/dev/null || missing+=(softhsm2)
command -v pkcs11-tool >/dev/null || missing+=(opensc)
command -v openssl >/dev/null || missing+=(openssl)
command -v swtpm >/dev/null || missing+=(swtpm)
command -v tpm2-abrmd >/dev/null || missing+=(tpm2-abrmd)
command -v tpm2_ptool >/dev/null || missing+=(libtpm2-pkcs11-tools)
command -v dbus-daemon >/dev/null || missing+=(dbus)
command -v pkcsslotd >/dev/null || missing+=(opencryptoki)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "==> installing ${missing[*]} with apt-get"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${APT_PACKAGES[@]}" >/dev/null
  else
    echo "trusted-issuer needs: ${APT_PACKAGES[*]}" >&2
    echo "install them with:   sudo apt-get install -y ${APT_PACKAGES[*]}" >&2
    exit 1
  fi
fi

if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "trusted-issuer needs Python 3.11 or newer; $PYTHON is $("$PYTHON" -V 2>&1)" >&2
  exit 1
fi

stamp="$VENV/.installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ sandbox/pyproject.toml -nt "$stamp" ]; then
  echo "==> creating $VENV and installing trusted-issuer with its test tools and the sandbox"
  if ! "$PYTHON" -m venv "$VENV" 2>/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      apt-get install -y -qq python3-venv >/dev/null
      "$PYTHON" -m venv "$VENV"
    else
      echo "python venv is missing: sudo apt-get install -y python3-venv" >&2
      exit 1
    fi
  fi
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q -e '.[test,lint]' -e ./sandbox
  touch "$stamp"
fi
