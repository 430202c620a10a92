from __future__ import annotations
import base64, collections, time, uuid
from issuer.sandbox import allow_rows
from tests.csrs import make_csr
from tests.operator.conftest import Cluster
from tests.operator.kube import CR_PATH, ISSUER_PATH, CLUSTER_ISSUER_PATH, certificate_request, condition, issuer_body

CSR_PATH = "/apis/certificates.k8s.io/v1/certificatesigningrequests"

def test_probe(cluster: Cluster) -> None:
    kube = cluster.kube
    t0 = time.monotonic()
    ns = f"rbac-{uuid.uuid4().hex[:6]}"
    kube.namespace(ns)
    cr = CR_PATH.format(ns=ns)
    kube.create(cr, certificate_request("web", make_csr(dns=["web.example.com"]), issuer="ca"))
    kube.approve(ns, "web")
    kube.wait(f"{cr}/web", lambda o: condition(o).get("reason") == "Pending")
    cluster.sandbox.faults.add(status=409, verbs={"patch"}, resources={"certificaterequests/status"}, namespaces={ns}, times=1)
    cluster.sandbox.faults.add(status=409, verbs={"patch"}, resources={"certificatesigningrequests/status"}, times=1)
    ipath = ISSUER_PATH.format(ns=ns)
    kube.create(ipath, issuer_body("ca", namespace=ns, deletion_policy="Destroy"))
    kube.create(CLUSTER_ISSUER_PATH, issuer_body(f"c-{ns}", deletion_policy="Destroy"))
    done = kube.wait(f"{cr}/web", lambda o: condition(o).get("reason") == "Issued")
    cluster.sandbox.access_policy = allow_rows([("*", "reference", "signers.certificates.k8s.io", "*")])
    signer = f"trustedissuers.trusted-issuer.dev/{ns}.ca"
    body = {"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest", "metadata": {"name": ns},
            "spec": {"request": base64.b64encode(make_csr(uris=["spiffe://x/y"])).decode(), "signerName": signer, "usages": ["client auth"]}}
    kube.create(CSR_PATH, body)
    kube.call("PATCH", f"{CSR_PATH}/{ns}/approval", {"status": {"conditions": [{"type": "Approved", "status": "True", "reason": "T", "message": "m"}]}}, "application/merge-patch+json")
    kube.wait(f"{CSR_PATH}/{ns}", lambda o: bool(o.get("status", {}).get("certificate")))
    kube.wait(f"{CLUSTER_ISSUER_PATH}/c-{ns}", lambda o: condition(o).get("status") == "True")
    kube.delete(f"{ipath}/ca")
    kube.delete(f"{CLUSTER_ISSUER_PATH}/c-{ns}")
    from tests.operator.kube import ApiFailure
    def gone(p):
        try:
            kube.get(p); return False
        except ApiFailure: return True
    from tests.operator.conftest import wait_until
    wait_until(lambda: gone(f"{ipath}/ca") and gone(f"{CLUSTER_ISSUER_PATH}/c-{ns}"))
    print("elapsed", time.monotonic() - t0)
    time.sleep(1)
    recs = list(cluster.sandbox)
    c = collections.Counter()
    from issuer.sandbox.routing import describe_call
    for r in recs:
        call = describe_call(r.method.value, r.url.path, dict(r.params))
        c[(r.headers.get("User-Agent"), call.rule)] += 1
    for k, v in sorted(c.items(), key=str):
        print(k, v)
    print(len(cluster.sandbox.calls), len(recs))
