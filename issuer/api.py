"""Names shared by the controller, the CRDs and the chart: API group, kinds, conditions, reasons."""

from __future__ import annotations

GROUP = "trusted-issuer.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

ISSUER_KIND = "TrustedIssuer"
CLUSTER_ISSUER_KIND = "TrustedClusterIssuer"
ISSUER_PLURAL = "trustedissuers"
CLUSTER_ISSUER_PLURAL = "trustedclusterissuers"
ISSUER_KINDS = (ISSUER_KIND, CLUSTER_ISSUER_KIND)

CERT_MANAGER_GROUP = "cert-manager.io"
CERT_MANAGER_VERSION = "v1"
CERTIFICATE_REQUEST_PLURAL = "certificaterequests"

CONDITION_READY = "Ready"
#: On an issuer: a rotation it was asked for waits (another is pending, or its key quota is full); the
#: issuer keeps signing with its current key.
CONDITION_ROTATION_REFUSED = "RotationRefused"
CONDITION_APPROVED = "Approved"
CONDITION_DENIED = "Denied"

# cert-manager's CertificateRequest Ready reasons (cert-manager looks for exactly these).
REASON_PENDING = "Pending"
REASON_ISSUED = "Issued"
REASON_FAILED = "Failed"
REASON_DENIED = "Denied"

ENV_PREFIX = "TRUSTED_ISSUER_"

# Our issuers' Ready reasons that the controller itself decides (token and chain errors keep the
# signer's reasons: KeyNotFound, PINIncorrect, CAKeyMismatch, ChainUntrusted, WrappedForAnotherKey, ...).
REASON_KEY_READY = "KeyReady"
#: A Warning Event: what the issuer's policy refuses since the stricter defaults (docs/policy.md).
REASON_POLICY_TIGHTENED = "PolicyTightened"
REASON_INVALID_SPEC = "InvalidSpec"
#: A Normal Event: a key rotation entered a phase (Distributing, Signing, Retiring, Done).
REASON_ROTATION_PHASE = "RotationPhase"
#: Waiting for an administrator: wrap the CA key for status.wrappingKey and create the import Secret.
REASON_AWAITING_WRAPPED_KEY = "AwaitingWrappedKey"
#: Waiting for an administrator: sign status.caCSR and put the certificate and root in the Secret.
REASON_AWAITING_CA_CERTIFICATE = "AwaitingCACertificate"
#: The named Secret lacks a key it must hold (wrapped-key.bin, tls.crt).
REASON_SECRET_INCOMPLETE = "SecretIncomplete"  # noqa: S105  # a reason, not a secret
#: An imported key whose certificate is neither in status nor in the Secret any more.
REASON_CA_CERTIFICATE_MISSING = "CACertificateMissing"
#: A TrustedClusterIssuer's Secret namespace is neither configured nor discoverable.
REASON_CLUSTER_RESOURCE_NAMESPACE_UNKNOWN = "ClusterResourceNamespaceUnknown"
