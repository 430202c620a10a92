"""The kopf operator: our issuers, cert-manager CertificateRequests and Kubernetes CSRs.

It knows nothing about PKCS#11.

Importing this package registers every kopf handler (issuers, start-up and clean-up; requests are
watched by the operator's own watches, started at start-up), so ``kopf run -m issuer.controller`` runs it.
"""

from issuer.controller.issuers import reconcile
from issuer.controller.replica import lifecycle
from issuer.controller.requests import processing

__all__ = ["lifecycle", "processing", "reconcile"]
