"""An issuer's trust bundle, published where workloads and their tools read it (issue 16).

The bundle is every CA certificate a workload must trust now (``status.ca``: the signing CA, a next CA
while it is distributed, a retiring CA until the last certificate it signed has expired). It goes to:

- a ConfigMap, key ``ca.crt`` (what trust-manager takes as a ``Bundle`` source and what a pod mounts):
  in the issuer's own namespace for a TrustedIssuer, in the operator's configured trust-bundle namespace
  for a TrustedClusterIssuer (``TRUSTED_ISSUER_TRUST_BUNDLE_NAMESPACE``), never in a namespace a tenant
  names: no spec or status field enters the place. The operator creates it with an owner reference to
  the issuer and writes only a ConfigMap it owns: one that exists without that reference is refused
  (``ConfigMapNotOwned``) and left as it is;
- a ``certificates.k8s.io/v1`` ClusterTrustBundle named for the issuer's signer name, which pods mount
  through a projected volume (``clusterTrustBundle: {signerName: ...}``). Writing one with a signer
  name needs the ``attest`` verb on that signer; where the API is not served the bundle is skipped and
  the condition says so.

The place and the bodies are pure; :func:`held` and :func:`publish` make the calls.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from issuer import api
from issuer.controller.issuers.provisioned_ca import secret_namespace
from issuer.controller.kubeapi import Conflict, KubeClient, NotFound
from issuer.controller.registry import describe, issuer_ref, signer_name
from issuer.errors import RetryableError
from issuer.signer.api import describe_ca

#: The key of the bundle in the ConfigMap: trust-manager's and cert-manager's name for a CA bundle.
BUNDLE_KEY = "ca.crt"
CLUSTER_TRUST_BUNDLES = "/apis/certificates.k8s.io/v1/clustertrustbundles"
#: Labels on what the operator publishes, so an administrator finds it (and a trust-manager Bundle can
#: select it with ``includeAllKeys``-free ``configMap: {name, key}`` or a label selector).
MANAGED_BY = {"app.kubernetes.io/managed-by": "trusted-issuer"}
ISSUER_KIND_LABEL = "trusted-issuer.dev/issuer-kind"
ISSUER_NAME_LABEL = "trusted-issuer.dev/issuer-name"
ISSUER_UID_ANNOTATION = "trusted-issuer.dev/issuer-uid"

#: Condition on the issuer: the bundle is (or is not) where workloads read it.
CONDITION = "TrustBundlePublished"
REASON_PUBLISHED = "Published"
REASON_NOT_OWNED = "ConfigMapNotOwned"
REASON_PUBLISH_FAILED = "PublishFailed"

_PEM_BLOCK = re.compile(r"-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----")


def pem_blocks(text: str) -> list[str]:
    """The certificate blocks of a PEM text, as written (whitespace inside a block kept)."""
    return _PEM_BLOCK.findall(text)


@dataclass(frozen=True)
class BundlePlace:
    """Where one issuer's bundle goes, derived from its kind, name and uid and the operator's settings
    only."""

    kind: str
    issuer_name: str
    issuer_uid: str
    issuer: str
    namespace: str
    config_map: str
    signer_name: str
    cluster_trust_bundle: str

    @classmethod
    def of(cls, kind: str, meta: Mapping[str, Any], configured_namespace: str | None) -> BundlePlace:
        """The place of an issuer's bundle. A TrustedIssuer's is its own namespace; a
        TrustedClusterIssuer's the configured trust-bundle namespace, else the cluster resource one."""
        name = str(meta["name"])
        namespace = meta.get("namespace") if kind == api.ISSUER_KIND else None
        ref = issuer_ref(kind, namespace, name)
        target = secret_namespace(kind, namespace, configured_namespace)
        prefix = "trusted-issuer" if kind == api.ISSUER_KIND else "trusted-cluster-issuer"
        signer = signer_name(ref)
        return cls(
            kind=kind,
            issuer_name=name,
            issuer_uid=str(meta.get("uid", "")),
            issuer=describe(ref),
            namespace=target,
            config_map=f"{prefix}-{name}-bundle",
            signer_name=signer,
            # ClusterTrustBundle validation: a bundle with a signer name is named "<signer with : for />:<x>".
            cluster_trust_bundle=signer.replace("/", ":") + ":bundle",
        )

    @property
    def config_map_path(self) -> str:
        return f"/api/v1/namespaces/{self.namespace}/configmaps/{self.config_map}"

    @property
    def where(self) -> str:
        return f"ConfigMap {self.namespace}/{self.config_map}"

    def owner_reference(self) -> dict[str, Any]:
        return {
            "apiVersion": api.API_VERSION,
            "kind": self.kind,
            "name": self.issuer_name,
            "uid": self.issuer_uid,
            "controller": True,
        }

    def labels(self) -> dict[str, str]:
        return {**MANAGED_BY, ISSUER_KIND_LABEL: self.kind, ISSUER_NAME_LABEL: self.issuer_name}

    def config_map_body(self, pem: str) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": self.config_map,
                "namespace": self.namespace,
                "labels": self.labels(),
                "ownerReferences": [self.owner_reference()],
            },
            "data": {BUNDLE_KEY: pem},
        }

    def cluster_trust_bundle_body(self, pem: str) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "name": self.cluster_trust_bundle,
            "labels": self.labels(),
            "annotations": {ISSUER_UID_ANNOTATION: self.issuer_uid},
        }
        if self.kind == api.CLUSTER_ISSUER_KIND:
            # A cluster-scoped object may be owned only by a cluster-scoped one: a TrustedIssuer's bundle
            # carries its uid in an annotation instead (and stays after the issuer is deleted).
            meta["ownerReferences"] = [self.owner_reference()]
        return {
            "apiVersion": "certificates.k8s.io/v1",
            "kind": "ClusterTrustBundle",
            "metadata": meta,
            "spec": {"signerName": self.signer_name, "trustBundle": pem},
        }

    def owns(self, obj: Mapping[str, Any]) -> bool:
        """Is ``obj`` this issuer's own: a controller owner reference to its uid (ConfigMaps, a cluster
        issuer's ClusterTrustBundle) or, for a TrustedIssuer's ClusterTrustBundle, its uid annotation
        (only a holder of ``attest`` on our signer names can write one)."""
        meta = obj.get("metadata") or {}
        for ref in meta.get("ownerReferences") or ():
            if ref.get("uid") == self.issuer_uid and ref.get("controller") and ref.get("kind") == self.kind:
                return True
        annotations = meta.get("annotations") or {}
        return obj.get("kind") == "ClusterTrustBundle" and annotations.get(ISSUER_UID_ANNOTATION) == (
            self.issuer_uid
        )


@dataclass(frozen=True)
class Held:
    """The issuer's ConfigMap as found: its body (None if absent), whether we own it, its bundle."""

    body: dict[str, Any] | None
    owned: bool
    pem: str
    #: Why the ConfigMap could not be read (then nothing is written, and no phase advances on it).
    error: str | None = None

    def holds(self, pem: str) -> bool:
        """Does the published bundle hold every certificate of ``pem``?"""
        mine = set(pem_blocks(self.pem)) if self.owned else set()
        wanted = pem_blocks(pem)
        return bool(wanted) and all(block in mine for block in wanted)

    def holds_key(self, public_key_sha256: str) -> bool:
        """Does the published bundle hold a CA certificate of this key?"""
        for block in pem_blocks(self.pem) if self.owned else ():
            try:
                if describe_ca(block.encode()).public_key_sha256 == public_key_sha256:
                    return True
            except ValueError:
                continue
        return False


@dataclass(frozen=True)
class Publication:
    """What one publication achieved, for the ``TrustBundlePublished`` condition."""

    published: bool
    reason: str
    message: str
    #: The bundle the ConfigMap holds afterwards ("" if none of ours).
    held_pem: str


async def held(client: KubeClient, place: BundlePlace) -> Held:
    """The ConfigMap as it is now (one GET)."""
    try:
        body = await client.get(place.config_map_path)
    except NotFound:
        return Held(None, False, "")
    except RetryableError as err:
        return Held(None, False, "", err.message)
    owned = place.owns(body)
    return Held(body, owned, str((body.get("data") or {}).get(BUNDLE_KEY, "")) if owned else "")


async def publish(client: KubeClient, place: BundlePlace, before: Held, pem: str) -> Publication:
    """Write ``pem`` to the issuer's ConfigMap (created if absent, updated with a resourceVersion
    precondition if ours, refused if not ours) and its ClusterTrustBundle. Never raises for a refusal:
    the answer says what happened."""
    if before.error is not None:
        return Publication(False, REASON_PUBLISH_FAILED, f"{place.where}: {before.error}", "")
    if before.body is not None and not before.owned:
        return Publication(
            False,
            REASON_NOT_OWNED,
            f"{place.where} exists and is not owned by {place.issuer}: it is left as it is and the trust "
            "bundle is not published there; delete or rename it to let the operator create its own",
            "",
        )
    try:
        await _write_config_map(client, place, before, pem)
    except NotFound:
        return Publication(
            False,
            REASON_PUBLISH_FAILED,
            f"{place.where}: not found (namespace {place.namespace} missing, or the ConfigMap deleted "
            "meanwhile); a missing namespace must be created (a TrustedClusterIssuer's: "
            f"{api.ENV_PREFIX}TRUST_BUNDLE_NAMESPACE, chart operator.trustBundleNamespace)",
            before.pem,
        )
    except (RetryableError, Conflict) as err:
        text = err.message if isinstance(err, RetryableError) else f"conflict writing {err}"
        return Publication(False, REASON_PUBLISH_FAILED, f"{place.where}: {text}", before.pem)
    try:
        bundle_note = await _write_cluster_trust_bundle(client, place, pem)
    except (RetryableError, Conflict, NotFound) as err:
        text = err.message if isinstance(err, RetryableError) else f"{type(err).__name__} {err}"
        bundle_note = f"ClusterTrustBundle {place.cluster_trust_bundle} not written: {text}"
    count = len(pem_blocks(pem))
    return Publication(
        True,
        REASON_PUBLISHED,
        f"{count} CA certificate(s) in {place.where} (key {BUNDLE_KEY}); {bundle_note}",
        pem,
    )


async def _write_config_map(client: KubeClient, place: BundlePlace, before: Held, pem: str) -> None:
    body = place.config_map_body(pem)
    if before.body is None:
        await client.request("POST", f"/api/v1/namespaces/{place.namespace}/configmaps", body, answer=False)
        return
    meta = before.body.get("metadata") or {}
    if before.pem == pem and all((meta.get("labels") or {}).get(k) == v for k, v in place.labels().items()):
        return
    body["metadata"]["resourceVersion"] = meta.get("resourceVersion")
    # Keep what others added (labels trust-manager or an administrator set), change only ours.
    body["metadata"]["labels"] = {**(meta.get("labels") or {}), **place.labels()}
    body["metadata"]["ownerReferences"] = meta.get("ownerReferences") or [place.owner_reference()]
    body["data"] = {**(before.body.get("data") or {}), BUNDLE_KEY: pem}
    await client.request("PUT", place.config_map_path, body, answer=False)


async def _write_cluster_trust_bundle(client: KubeClient, place: BundlePlace, pem: str) -> str:
    path = f"{CLUSTER_TRUST_BUNDLES}/{place.cluster_trust_bundle}"
    body = place.cluster_trust_bundle_body(pem)
    try:
        found = await client.get(path)
    except NotFound:
        try:
            await client.request("POST", CLUSTER_TRUST_BUNDLES, body, answer=False)
        except NotFound:
            return "ClusterTrustBundle API (certificates.k8s.io/v1) not served here: not published"
        return f"ClusterTrustBundle {place.cluster_trust_bundle}"
    if not place.owns(found):
        return f"ClusterTrustBundle {place.cluster_trust_bundle} exists and is not ours: left as it is"
    if (found.get("spec") or {}).get("trustBundle") != pem:
        body["metadata"]["resourceVersion"] = (found.get("metadata") or {}).get("resourceVersion")
        await client.request("PUT", path, body, answer=False)
    return f"ClusterTrustBundle {place.cluster_trust_bundle}"
