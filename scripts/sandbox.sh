#!/usr/bin/env bash
# The operator end to end on this machine: the project's SoftHSM2 token, the local sandbox API server
# (there is no Kubernetes here), the operator as its own process, and kubectl.
#   scripts/sandbox.sh demo    issue one certificate through a TrustedIssuer, verify it, shut down
#   scripts/sandbox.sh serve   keep the sandbox and operator running and print a KUBECONFIG
set -euo pipefail
mode=${1:-demo}
VENV=${VENV:-.venv}
PY="$VENV/bin/python"
KUBECTL="$VENV/bin/kubectl"
export PATH="$PWD/$VENV/bin:$PATH"

eval "$("$VENV/bin/trusted-issuer" hsm init-dev-token)"
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ -n "${KEEP:-}" ] && echo "kept $work" || rm -rf "$work"
}
trap cleanup EXIT

cat > "$work/profiles.yaml" <<YAML
profiles:
  dev:
    tokenLabel: $TRUSTED_ISSUER_TOKEN_LABEL
    pinFile: $TRUSTED_ISSUER_PIN_FILE
YAML

free_port() { "$PY" -c 'import socket; s = socket.socket(); s.bind(("", 0)); print(s.getsockname()[1])'; }
port=$(free_port)
# The operator's probe and metrics ports are picked free too, so a demo runs beside a running sandbox (or
# anything else on 8080 and 9402); its metrics stay on loopback: they name every issuer.
export TRUSTED_ISSUER_HEALTH_PORT=${TRUSTED_ISSUER_HEALTH_PORT:-$(free_port)}
export TRUSTED_ISSUER_METRICS_PORT=${TRUSTED_ISSUER_METRICS_PORT:-$(free_port)}
export TRUSTED_ISSUER_METRICS_BIND_ADDRESS=${TRUSTED_ISSUER_METRICS_BIND_ADDRESS:-127.0.0.1}
export KUBECONFIG="$work/kubeconfig"
"$PY" -m trusted_issuer_sandbox --port "$port" --kubeconfig "$KUBECONFIG" --cert-manager > "$work/sandbox.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do [ -f "$KUBECONFIG" ] && "$KUBECTL" version >/dev/null 2>&1 && break; sleep 0.1; done

echo "==> kubectl apply -f crds/"
"$KUBECTL" apply -f crds/
TRUSTED_ISSUER_PROFILES_FILE="$work/profiles.yaml" "$PY" -m issuer run > "$work/operator.log" 2>&1 &
operator=$!
pids+=("$operator")

# The operator has exited: say so with the end of its log, and stop (never wait out a timeout for it).
operator_exited() {
  local status=0
  wait "$operator" || status=$?
  echo "sandbox.sh: the operator exited (status $status); the end of its log:" >&2
  tail -n 30 "$work/operator.log" >&2
  exit 1
}

# Run a command (a kubectl wait) while watching the operator: if the operator exits first, stop at once.
while_operator_runs() {
  "$@" &
  local command=$! status=0
  while kill -0 "$command" 2>/dev/null; do
    if ! kill -0 "$operator" 2>/dev/null; then
      kill "$command" 2>/dev/null || true
      operator_exited
    fi
    sleep 0.2
  done
  wait "$command" || status=$?
  return "$status"
}

if [ "$mode" = serve ]; then
  echo
  echo "sandbox API server and operator are running (operator log: $work/operator.log)"
  echo "probes: http://127.0.0.1:$TRUSTED_ISSUER_HEALTH_PORT/readyz  metrics: http://$TRUSTED_ISSUER_METRICS_BIND_ADDRESS:$TRUSTED_ISSUER_METRICS_PORT/metrics"
  echo "in another shell:  export KUBECONFIG=$KUBECONFIG PATH=$PWD/$VENV/bin:\$PATH"
  echo "then e.g.:         kubectl apply -f examples/trustedissuer.yaml; kubectl get trustedissuers -A -w"
  echo "press Ctrl-C to stop"
  while kill -0 "$operator" 2>/dev/null; do sleep 0.5; done
  operator_exited
fi

echo "==> kubectl apply -f examples/trustedissuer.yaml"
"$KUBECTL" apply -f examples/trustedissuer.yaml
while_operator_runs "$KUBECTL" wait --for=condition=Ready trustedissuer/mesh-ca -n demo --timeout=90s
"$KUBECTL" get trustedissuers -n demo

echo "==> a workload's CSR (its key stays with the workload) as a cert-manager CertificateRequest"
# The issuer's policy names DNS and URI rules, so the common name must be one of the SANs (docs/policy.md).
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$work/web.key" \
  -subj "/CN=web.demo.svc.cluster.local" \
  -addext "subjectAltName=DNS:web.demo.svc.cluster.local,URI:spiffe://cluster.local/ns/demo/sa/web" \
  -out "$work/web.csr" 2>/dev/null
cat > "$work/request.yaml" <<YAML
apiVersion: cert-manager.io/v1
kind: CertificateRequest
metadata:
  name: web
  namespace: demo
spec:
  request: $(base64 -w0 < "$work/web.csr")
  duration: 24h
  usages: [digital signature, server auth, client auth]
  issuerRef: {group: trusted-issuer.dev, kind: TrustedIssuer, name: mesh-ca}
YAML
"$KUBECTL" apply -f "$work/request.yaml"

echo "==> approving it, as cert-manager's approver would"
"$KUBECTL" patch certificaterequest web -n demo --subresource=status --type=merge -p \
  '{"status":{"conditions":[{"type":"Approved","status":"True","reason":"make-demo","message":"approved by make demo"}]}}'
if ! while_operator_runs "$KUBECTL" wait --for=condition=Ready certificaterequest/web -n demo --timeout=60s; then
  echo "the CertificateRequest is not Ready; its status says:" >&2
  "$KUBECTL" get certificaterequest web -n demo -o jsonpath='{range .status.conditions[*]}{.type}={.status} {.reason}: {.message}{"\n"}{end}' >&2
  exit 1
fi
"$KUBECTL" get certificaterequest web -n demo

"$KUBECTL" get certificaterequest web -n demo -o jsonpath='{.status.certificate}' | base64 -d > "$work/chain.pem"
"$KUBECTL" get certificaterequest web -n demo -o jsonpath='{.status.ca}' | base64 -d > "$work/ca.pem"
echo
openssl x509 -in "$work/chain.pem" -noout -subject -ext subjectAltName -issuer -dates
echo
echo "==> openssl verify -CAfile status.ca status.certificate"
openssl verify -CAfile "$work/ca.pem" -purpose sslserver "$work/chain.pem"
echo
echo "==> the issuer's key handle in status (never key material):"
"$KUBECTL" get trustedissuer mesh-ca -n demo -o jsonpath='{.status.keyHandle}'; echo
