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
CONDITION_APPROVED = "Approved"
CONDITION_DENIED = "Denied"

# cert-manager's CertificateRequest Ready reasons (cert-manager looks for exactly these).
REASON_PENDING = "Pending"
REASON_ISSUED = "Issued"
REASON_FAILED = "Failed"
REASON_DENIED = "Denied"

ENV_PREFIX = "TRUSTED_ISSUER_"
