"""The kopf operator: our issuers, cert-manager CertificateRequests and Kubernetes CSRs.

It knows nothing about PKCS#11.

Importing this package registers every handler, so ``kopf run -m issuer.controller`` runs it.
"""

from issuer.controller import issuers, lifecycle, requests

__all__ = ["issuers", "lifecycle", "requests"]
