"""The chart's RBAC is exactly what the operator calls: derived from the API calls the sandbox receives.

The operator is restarted with an empty call log, then driven through everything it does: start-up
(lists and watches), a TrustedIssuer and a TrustedClusterIssuer reconciled and deleted with
``deletionPolicy: Destroy``, a CertificateRequest that waits for its issuer (Pending), is approved and
issued, and a Kubernetes CertificateSigningRequest for our signer name (SubjectAccessReview, status).
A conflict is injected into the first certificate publish of each request, so the re-read after a
conflict is exercised too. The calls whose User-Agent is the operator's become RBAC rules
(apiGroup, resource[/subresource], verb) in the namespace each was made in, and the (Cluster)Roles the
chart binds to the operator's ServiceAccount must grant those and nothing else, but for the one rule the
API server checks without the operator ever calling it (``signers`` ``sign``, before a CSR's
``status.certificate`` is written). A rule granted by a Role counts only in that Role's namespace: the
Secrets that intermediate issuers name are read in the namespaces ``rbac.secretAccess`` lists, and so
must be granted there, and nowhere else.
"""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from trusted_issuer_sandbox import ApiCall, Sandbox, allow_rows

from tests.chart.rendering import Rendered, render
from tests.csrs import make_csr
from tests.operator.conftest import Cluster, wait_until
from tests.operator.kube import (
    CLUSTER_ISSUER_PATH,
    CR_PATH,
    ISSUER_PATH,
    ApiFailure,
    certificate_request,
    condition,
    issuer_body,
)

CSR_PATH = "/apis/certificates.k8s.io/v1/certificatesigningrequests"
#: kopf's own client, and issuer.controller.kubeapi.KubeClient (status writes, SubjectAccessReviews).
OPERATOR_AGENTS = ("kopf/", "trusted-issuer")
#: The tests' client (tests/operator/kube.py, on requests).
TEST_AGENTS = ("python-requests/",)
OUR_SIGNERS = ["trustedissuers.trusted-issuer.dev/*", "trustedclusterissuers.trusted-issuer.dev/*"]
#: Granted, never called: kube-apiserver checks ``sign`` on the signer name itself before it lets a
#: signer write a CertificateSigningRequest's status.certificate (the sandbox enforces no RBAC).
#: And ``attest``, before it lets anyone write a ClusterTrustBundle naming one of our signers.
CHECKED_BY_THE_API_SERVER = {
    ("certificates.k8s.io", "signers", "sign"): OUR_SIGNERS,
    ("certificates.k8s.io", "signers", "attest"): OUR_SIGNERS,
}
#: The sandbox serves no ClusterTrustBundle API: the operator's get and create are answered 404, so an
#: update never follows here (tests/cluster/test_zz_rbac.py sees it on a real API server).
NOT_SERVED_BY_THE_SANDBOX = {("certificates.k8s.io", "clustertrustbundles", "update")}
DISCOVERY_PREFIXES = ("/api", "/apis", "/version")
#: The sandbox operator's namespace: where it keeps its Lease (no pod namespace: the default one). The
#: chart is rendered into it, so its Lease Role lands where the Lease is.
OPERATOR_NAMESPACE = "default"
LEASE = f"/apis/coordination.k8s.io/v1/namespaces/{OPERATOR_NAMESPACE}/leases/trusted-issuer"
#: TRUSTED_ISSUER_CLUSTER_RESOURCE_NAMESPACE of the sandbox operator (tests/operator/conftest.py).
CLUSTER_RESOURCE_NAMESPACE = "trusted-issuer"

Rule = tuple[str, str, str]


@dataclass
class Grants:
    """What the chart lets the operator's ServiceAccount do."""

    #: Rules of ClusterRoles bound by ClusterRoleBindings: every namespace.
    cluster: set[Rule] = field(default_factory=set)
    #: Rules of Roles (or ClusterRoles) bound by RoleBindings: in the binding's namespace only.
    namespaced: dict[str, set[Rule]] = field(default_factory=dict)
    #: Rules limited to resourceNames.
    named: dict[Rule, list[str]] = field(default_factory=dict)


def _chart_grants(rendered: Rendered) -> Grants:
    """Rules of every (Cluster)Role bound to the operator's ServiceAccount, by where they apply."""
    account = rendered.one("ServiceAccount")["metadata"]
    roles = {
        (r["kind"], r["metadata"].get("namespace"), r["metadata"]["name"]): r
        for r in rendered.of_kind("ClusterRole") + rendered.of_kind("Role")
    }
    grants = Grants()
    for binding in rendered.of_kind("ClusterRoleBinding") + rendered.of_kind("RoleBinding"):
        subjects = binding.get("subjects") or []
        if not any(
            s["kind"] == "ServiceAccount"
            and s["name"] == account["name"]
            and s["namespace"] == account["namespace"]
            for s in subjects
        ):
            continue
        namespace = binding["metadata"].get("namespace")  # None for a ClusterRoleBinding
        kind = binding["roleRef"]["kind"]
        role = roles[(kind, namespace if kind == "Role" else None, binding["roleRef"]["name"])]
        granted = grants.cluster if namespace is None else grants.namespaced.setdefault(namespace, set())
        for rule in role["rules"]:
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    for verb in rule["verbs"]:
                        if rule.get("resourceNames"):
                            grants.named[(group, resource, verb)] = list(rule["resourceNames"])
                        else:
                            granted.add((group, resource, verb))
    return grants


def _agent_calls(sandbox: Sandbox) -> list[tuple[ApiCall, str]]:
    """Every call in ``sandbox.calls`` with the User-Agent that made it.

    ``ApiCall`` keeps no headers; the sandbox's request records (kmock's, which do) are appended in the
    same step, so the last N records are the N calls. Taken while the sandbox is quiet, and checked
    pair by pair."""
    deadline = time.monotonic() + 15
    while True:
        calls, records = sandbox.calls, list(sandbox)
        time.sleep(0.3)
        later_calls, later_records = sandbox.calls, list(sandbox)
        quiet = (
            calls
            and records
            and later_calls[-1] is calls[-1]
            and later_records[-1] is records[-1]
            and len(later_calls) == len(calls)
        )
        if quiet:
            break
        if time.monotonic() > deadline:
            raise AssertionError("the sandbox never went quiet for 0.3 s")
    assert len(records) >= len(calls), "the request records were trimmed below the call log"
    paired = []
    for call, record in zip(calls, records[len(records) - len(calls) :], strict=True):
        method = str(getattr(record.method, "value", record.method)).upper()
        assert (call.method, call.path) == (method, record.url.path), "call log and records disagree"
        paired.append((call, str(record.headers.get("User-Agent", ""))))
    return paired


@pytest.fixture
def tenant() -> str:
    """The namespace the test's issuers live in; the chart is told it uses intermediate CAs."""
    return f"rbac-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def chart(tenant: str) -> Rendered:
    # Skips, saying what to install, when helm-python-sdk is missing.
    values = {
        "operator": {"clusterResourceNamespace": CLUSTER_RESOURCE_NAMESPACE},
        "rbac": {"secretAccess": {"namespaces": [tenant], "clusterIssuers": True}},
    }
    return render(values, namespace=OPERATOR_NAMESPACE)


@pytest.fixture
def quiet_operator(cluster: Cluster) -> Iterator[Cluster]:
    """The operator restarted on an empty call log, so its start-up calls are in the window; without its
    Lease, so that creating the Lease (a first install's call) is in the window too."""
    previous_policy = cluster.sandbox.access_policy
    cluster.operator.stop()
    try:
        cluster.kube.delete(LEASE)
    except ApiFailure as err:
        if err.status != 404:
            raise
    cluster.sandbox.clear_calls()
    cluster.operator.start()
    try:
        yield cluster
    finally:
        cluster.sandbox.access_policy = previous_policy
        cluster.sandbox.faults.clear()


def _gone(cluster: Cluster, path: str) -> bool:
    try:
        cluster.kube.get(path)
    except ApiFailure as err:
        return err.status == 404
    return False


def _drive_the_operator(cluster: Cluster, namespace: str) -> None:
    kube, sandbox = cluster.kube, cluster.sandbox
    kube.namespace(namespace)
    requests, issuers = CR_PATH.format(ns=namespace), ISSUER_PATH.format(ns=namespace)

    # A request approved before its issuer exists: the operator marks it Pending.
    kube.create(requests, certificate_request("web", make_csr(dns=["web.example.com"]), issuer="ca"))
    kube.approve(namespace, "web")
    kube.wait(f"{requests}/web", lambda o: condition(o).get("reason") == "Pending")
    # Its certificate publish meets a conflict once: the operator re-reads the request and publishes.
    sandbox.faults.add(
        status=409, verbs={"patch"}, resources={"certificaterequests/status"}, namespaces={namespace}, times=1
    )
    kube.create(
        issuers,
        issuer_body(
            "ca",
            namespace=namespace,
            deletion_policy="Destroy",
            policy={"maxDuration": "1h", "minDuration": "1m"},
        ),
    )
    done = kube.wait(f"{requests}/web", lambda o: condition(o).get("reason") in ("Issued", "Failed"))
    assert condition(done)["reason"] == "Issued", condition(done)
    # A rotation: the new CA joins the trust bundle, so the ConfigMap the operator owns is updated.
    kube.call(
        "PATCH",
        f"{issuers}/ca",
        {"spec": {"key": {"rotation": {"generation": 1, "overlap": "1h"}}}},
        "application/merge-patch+json",
    )
    kube.wait(
        f"/api/v1/namespaces/{namespace}/configmaps/trusted-issuer-ca-bundle",
        lambda o: o["data"]["ca.crt"].count("BEGIN CERTIFICATE") == 2,
    )

    # A Kubernetes CSR for the namespaced issuer's signer name, by a requester allowed to reference it.
    signer = f"trustedissuers.trusted-issuer.dev/{namespace}.ca"
    sandbox.access_policy = allow_rows([("*", "reference", "signers.certificates.k8s.io", signer)])
    name = f"rbac-{uuid.uuid4().hex[:8]}"
    csr = {
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": {"name": name},
        "spec": {
            "request": base64.b64encode(
                make_csr(uris=[f"spiffe://cluster.local/ns/{namespace}/sa/web"])
            ).decode(),
            "signerName": signer,
            "usages": ["digital signature", "client auth"],
        },
    }
    kube.create(CSR_PATH, csr)
    sandbox.faults.add(status=409, verbs={"patch"}, resources={"certificatesigningrequests/status"}, times=1)
    approval = {
        "type": "Approved",
        "status": "True",
        "reason": "RBACTest",
        "message": "approved by test_rbac",
    }
    kube.call(
        "PATCH",
        f"{CSR_PATH}/{name}/approval",
        {"status": {"conditions": [approval]}},
        "application/merge-patch+json",
    )
    signed = kube.wait(f"{CSR_PATH}/{name}", lambda o: bool(o.get("status", {}).get("certificate")))
    assert signed["status"]["certificate"]

    # One issuer at a time: two new issuers reconciled at once right after an operator start were seen
    # to report KeyNotFound for a freshly generated key until the 60 s recheck (reported, not ours).
    cluster_issuer = f"rbac-{uuid.uuid4().hex[:8]}"
    kube.create(CLUSTER_ISSUER_PATH, issuer_body(cluster_issuer, deletion_policy="Destroy"))
    kube.wait(f"{CLUSTER_ISSUER_PATH}/{cluster_issuer}", lambda o: condition(o).get("status") == "True")
    # An intermediate CA waiting for its certificate: the operator reads the Secret it names (get only).
    waiting = issuer_body("sub", namespace=namespace)
    waiting["spec"]["ca"] = {"intermediate": {"subject": "CN=sub", "secretName": "sub-ca"}}
    kube.create(issuers, waiting)
    kube.wait(f"{issuers}/sub", lambda o: condition(o).get("reason") == "AwaitingCACertificate")
    # The same for a TrustedClusterIssuer: its Secret is read in the cluster resource namespace.
    cluster_sub = f"rbac-sub-{uuid.uuid4().hex[:8]}"
    waiting = issuer_body(cluster_sub)
    waiting["spec"]["ca"] = {"intermediate": {"subject": "CN=sub", "secretName": cluster_sub}}
    kube.create(CLUSTER_ISSUER_PATH, waiting)
    kube.wait(
        f"{CLUSTER_ISSUER_PATH}/{cluster_sub}",
        lambda o: condition(o).get("reason") == "AwaitingCACertificate",
    )
    kube.delete(f"{CLUSTER_ISSUER_PATH}/{cluster_sub}")
    kube.delete(f"{issuers}/sub")
    kube.delete(f"{issuers}/ca")
    kube.delete(f"{CLUSTER_ISSUER_PATH}/{cluster_issuer}")
    wait_until(
        lambda: (
            _gone(cluster, f"{issuers}/ca")
            and _gone(cluster, f"{issuers}/sub")
            and _gone(cluster, f"{CLUSTER_ISSUER_PATH}/{cluster_issuer}")
            and _gone(cluster, f"{CLUSTER_ISSUER_PATH}/{cluster_sub}")
        )
    )


def _renewed(cluster: Cluster) -> bool:
    try:
        spec = cluster.kube.get(LEASE)["spec"]
    except ApiFailure:
        return False
    return bool(spec.get("renewTime")) and spec.get("renewTime") != spec.get("acquireTime")


def test_chart_grants_exactly_what_the_operator_calls(
    chart: Rendered, tenant: str, quiet_operator: Cluster
) -> None:
    _drive_the_operator(quiet_operator, tenant)
    # The Lease it created on start-up is renewed (an update) every retry period.
    wait_until(lambda: _renewed(quiet_operator))

    grants = _chart_grants(chart)
    used_everywhere: set[Rule] = set()
    used_in: dict[str, set[Rule]] = {}
    strangers: set[str] = set()
    ungranted_calls: list[str] = []
    for call, agent in _agent_calls(quiet_operator.sandbox):
        if agent.startswith(TEST_AGENTS):
            continue
        if not agent.startswith(OPERATOR_AGENTS):
            strangers.add(agent)
            continue
        if call.resource is None:
            # Discovery: granted to every authenticated user by Kubernetes' system:discovery role.
            assert call.verb == "get" and call.path.startswith(DISCOVERY_PREFIXES), call
            continue
        if call.namespace is not None and call.namespace not in (
            tenant,
            OPERATOR_NAMESPACE,
            CLUSTER_RESOURCE_NAMESPACE,
        ):
            # Issuers other tests of this package left in their own namespaces, resumed on the restart:
            # their calls say nothing about this test's values (which list only its tenant).
            continue
        # A call in a namespace is the namespace's Role's if that Role grants it; otherwise it needs a
        # cluster-wide grant, and a Secret read in a namespace the chart does not list shows up there.
        if call.namespace is not None and call.rule in grants.namespaced.get(call.namespace, set()):
            used_in.setdefault(call.namespace, set()).add(call.rule)
        else:
            used_everywhere.add(call.rule)
            if call.rule not in grants.cluster:
                ungranted_calls.append(f"{call.method} {call.path}")
    assert not strangers, f"calls by unknown clients: {sorted(strangers)}"

    assert sorted(used_everywhere - grants.cluster) == [], (
        f"the operator calls what the chart does not grant: {ungranted_calls[:10]}"
    )
    assert sorted(grants.cluster - used_everywhere - NOT_SERVED_BY_THE_SANDBOX) == [], (
        "the chart grants what the operator never calls"
    )
    assert used_in == grants.namespaced, "a Role grants what the operator never calls in its namespace"
    assert grants.named == CHECKED_BY_THE_API_SERVER
    # The Secrets read, and where: the issuers' own namespace and the cluster resource namespace only.
    secrets = ("", "secrets", "get")
    assert secrets not in grants.cluster
    assert {ns for ns, rules in used_in.items() if secrets in rules} == {tenant, CLUSTER_RESOURCE_NAMESPACE}
