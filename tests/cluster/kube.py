"""The tests' own client (tests/operator/kube.py) over TLS to a real kube-apiserver, as one identity:
an administrator or a tenant with a client certificate, or a bearer token."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from tests.operator.kube import Kube, condition, pem
from tests.verifiers import openssl_verify


class ClusterKube(Kube):
    def __init__(
        self,
        base_url: str,
        ca_file: Path,
        *,
        cert: tuple[Path, Path] | None = None,
        token: str | None = None,
    ) -> None:
        super().__init__(base_url)
        self.ca_file, self.cert, self.token = ca_file, cert, token
        # The environment's CA bundle (REQUESTS_CA_BUNDLE) would override verify= on a session.
        self.http.trust_env = False
        self.http.verify = str(ca_file)
        if cert:
            self.http.cert = (str(cert[0]), str(cert[1]))
        if token:
            self.http.headers["Authorization"] = f"Bearer {token}"

    def clone(self) -> ClusterKube:
        """The same identity on its own connections (for a watch beside the test's calls)."""
        return ClusterKube(self.base, self.ca_file, cert=self.cert, token=self.token)


def certificate_writes(audit_events: list[dict[str, Any]], namespace: str) -> dict[str, int]:
    """Per CertificateRequest of ``namespace``: how many status writes that carried a certificate the API
    server accepted (from its audit log, which records every write before answering it)."""
    counts: dict[str, int] = defaultdict(int)
    for event in audit_events:
        ref = event.get("objectRef") or {}
        if ref.get("resource") != "certificaterequests" or ref.get("subresource") != "status":
            continue
        if ref.get("namespace") != namespace or event.get("stage") != "ResponseComplete":
            continue
        if not 200 <= (event.get("responseStatus") or {}).get("code", 0) < 300:
            continue
        if ((event.get("requestObject") or {}).get("status") or {}).get("certificate"):
            counts[ref["name"]] += 1
    return dict(counts)


def assert_each_published_once(
    kube: ClusterKube, audit_events: list[dict[str, Any]], path: str, namespace: str, names: list[str]
) -> dict[str, dict[str, Any]]:
    """Every request of ``names`` (and no other) is Issued, the API server accepted exactly one status
    write carrying its certificate, and a sample verifies with openssl against its ``status.ca``."""
    items = {item["metadata"]["name"]: item for item in kube.get(path)["items"]}
    assert sorted(items) == sorted(names), "requests were lost or added"
    not_issued = {n: condition(i) for n, i in items.items() if condition(i).get("reason") != "Issued"}
    assert not not_issued, f"{len(not_issued)} not issued, e.g. {list(not_issued.items())[:3]}"
    writes = certificate_writes(audit_events, namespace)
    wrong = {name: writes.get(name, 0) for name in names if writes.get(name, 0) != 1}
    assert not wrong, f"requests not published exactly once (accepted certificate writes): {wrong}"
    for name in (names[0], names[len(names) // 2], names[-1]):
        status = items[name]["status"]
        openssl_verify(pem(status["certificate"]), pem(status["ca"]))
    return items
