"""The trust bundle under real RBAC (issue 16 under issue 12's rules): a tenant bound to ``admin`` in its
namespace, with ``trustedissuers/status`` patch on top, attacks the places its issuer's bundle goes.

- It cannot write a ClusterTrustBundle naming its own issuer's signer (the API server asks for ``attest``
  on the signer, which only the operator holds), so a workload mounting the bundle by signer name gets
  only what the operator published.
- It rewrites its issuer's ``status.trustBundle`` to name a ConfigMap in another namespace: the operator
  writes its own namespace's, and the other namespace's ConfigMap keeps its content and version.
- It squats its issuer's ConfigMap name before the issuer exists: the operator leaves it alone and says
  so; the ClusterTrustBundle (which the tenant cannot squat) is published all the same.
"""

from __future__ import annotations

import time
import uuid

from tests.cluster.conftest import Live
from tests.cluster.test_requests import ready_issuer
from tests.cluster.test_tenants import _forbidden, _tenant
from tests.operator.kube import ISSUER_PATH, ApiFailure, condition, issuer_body

CTB = "/apis/certificates.k8s.io/v1/clustertrustbundles"


def test_a_tenant_cannot_forge_redirect_or_overwrite_the_trust_bundle(live: Live) -> None:
    suffix = uuid.uuid4().hex[:6]
    home, other = f"tb-home-{suffix}", f"tb-other-{suffix}"
    ready_issuer(live.kube, other, "ca")
    victim_cm = f"/api/v1/namespaces/{other}/configmaps/trusted-issuer-ca-bundle"
    victim = live.kube.wait(victim_cm, lambda o: bool(o.get("data")))
    tenant = _tenant(live, home, status_writer=True)

    # Squat the ConfigMap name, then create the issuer.
    squat = {"metadata": {"name": "trusted-issuer-ca-bundle"}, "data": {"ca.crt": "the tenant's own"}}
    tenant.create(f"/api/v1/namespaces/{home}/configmaps", squat)
    tenant.create(ISSUER_PATH.format(ns=home), issuer_body("ca", namespace=home))
    path = f"{ISSUER_PATH.format(ns=home)}/ca"
    refused = live.kube.wait(
        path, lambda o: condition(o, "TrustBundlePublished").get("reason") == "ConfigMapNotOwned", timeout=120
    )
    assert condition(refused)["status"] == "True"
    assert (
        tenant.get(f"/api/v1/namespaces/{home}/configmaps/trusted-issuer-ca-bundle")["data"] == squat["data"]
    )

    # Forge a ClusterTrustBundle for its own issuer's signer: refused by the API server (attest).
    signer = f"trustedissuers.trusted-issuer.dev/{home}.ca"
    forged = {
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "ClusterTrustBundle",
        "metadata": {"name": f"{signer.replace('/', ':')}:forged"},
        "spec": {"signerName": signer, "trustBundle": refused["status"]["ca"]},
    }
    _forbidden(tenant.create, CTB, forged)

    # Redirect through status: the operator never reads the place from there.
    tenant.delete(f"/api/v1/namespaces/{home}/configmaps/trusted-issuer-ca-bundle")
    tenant.merge_status(path, {"trustBundle": {"configMap": f"{other}/trusted-issuer-ca-bundle"}})
    tenant.call("PATCH", path, {"spec": {"policy": {"maxDuration": "1h"}}}, "application/merge-patch+json")
    published = live.kube.wait(
        path,
        lambda o: (
            o["status"].get("observedGeneration") == o["metadata"]["generation"]
            and condition(o, "TrustBundlePublished").get("status") == "True"
        ),
        timeout=120,
    )
    assert published["status"]["trustBundle"]["configMap"] == f"{home}/trusted-issuer-ca-bundle"
    mine = live.kube.get(f"/api/v1/namespaces/{home}/configmaps/trusted-issuer-ca-bundle")
    assert mine["data"]["ca.crt"] == published["status"]["ca"]
    assert mine["metadata"]["ownerReferences"][0]["uid"] == published["metadata"]["uid"]
    after = live.kube.get(victim_cm)
    assert after["metadata"]["resourceVersion"] == victim["metadata"]["resourceVersion"]
    assert after["data"] == victim["data"]
    # And the operator's own ClusterTrustBundle for the tenant's signer holds exactly its bundle.
    ours = live.kube.get(f"{CTB}/{signer.replace('/', ':')}:bundle")
    assert ours["spec"]["trustBundle"] == published["status"]["ca"]


def test_the_bundle_config_map_goes_with_its_issuer(live: Live) -> None:
    """The owner reference is real: the kube-controller-manager's garbage collector deletes a deleted
    issuer's ConfigMap; a TrustedIssuer's ClusterTrustBundle (which a namespaced owner cannot own) stays,
    as docs/operations.md says."""
    namespace = f"tb-gc-{uuid.uuid4().hex[:6]}"
    ready_issuer(live.kube, namespace, "ca")
    cm = f"/api/v1/namespaces/{namespace}/configmaps/trusted-issuer-ca-bundle"
    live.kube.wait(cm, lambda o: bool(o.get("data")))
    live.kube.delete(f"{ISSUER_PATH.format(ns=namespace)}/ca")
    deadline = time.monotonic() + 60
    while True:
        try:
            live.kube.get(cm)
        except ApiFailure as err:
            assert err.status == 404
            break
        assert time.monotonic() < deadline, "the garbage collector left the ConfigMap"
        time.sleep(0.5)
    bundle = live.kube.get(f"{CTB}/trustedissuers.trusted-issuer.dev:{namespace}.ca:bundle")
    assert bundle["metadata"]["annotations"]["trusted-issuer.dev/issuer-uid"]
    live.kube.delete(f"{CTB}/trustedissuers.trusted-issuer.dev:{namespace}.ca:bundle")
