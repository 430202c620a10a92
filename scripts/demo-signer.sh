#!/usr/bin/env bash
# The signing core end to end on the project's own SoftHSM2 token: create a CA whose key is generated
# inside the token, sign a CSR made by openssl, and let openssl judge the result.
set -euo pipefail

VENV=${VENV:-.venv}
CLI="$VENV/bin/trusted-issuer"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

eval "$("$CLI" hsm init-dev-token)"
label="demo-root-$(date +%s)"

echo "==> generating an ECDSA P-256 CA key inside token '$TRUSTED_ISSUER_TOKEN_LABEL' and a self-signed CA"
"$CLI" ca create --key-label "$label" --algorithm ecdsa-p256 \
  --subject "CN=trusted-issuer demo root,O=trusted-issuer" --duration 87600h --out "$work/ca.pem" >/dev/null

echo "==> a workload makes its own key and CSR (the key never reaches the issuer)"
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$work/workload.key" \
  -subj "/CN=web.default.svc" \
  -addext "subjectAltName=DNS:web.default.svc.cluster.local,URI:spiffe://cluster.local/ns/default/sa/web" \
  -out "$work/workload.csr" 2>/dev/null

echo "==> signing it in the token"
"$CLI" sign --key-label "$label" --ca-cert "$work/ca.pem" --csr "$work/workload.csr" --duration 24h \
  --usage "digital signature" --usage "server auth" --usage "client auth" > "$work/chain.pem"

echo
openssl x509 -in "$work/chain.pem" -noout -subject -issuer -dates -ext subjectAltName,keyUsage,extendedKeyUsage
echo
echo "==> openssl verify -CAfile ca.pem -purpose sslserver"
openssl verify -CAfile "$work/ca.pem" -purpose sslserver "$work/chain.pem"
echo
echo "==> the CA key in the token (a handle, never material):"
"$CLI" hsm keys | sed -n "1p;/^$label /p"
