"""The kopf operator: our issuers, cert-manager CertificateRequests and Kubernetes CSRs; it knows nothing
about PKCS#11. Its layout and the path of one request: docs/architecture.md.

Importing this package registers kopf's start-up, clean-up and probe handlers (``replica.lifecycle``);
the start-up handler registers the issuer handlers of the kinds the Settings serve and starts the request
path, so ``kopf run -m issuer.controller`` runs the operator as ``trusted-issuer run`` does (without
election). Nothing here reads the environment at import time.
"""

from issuer.controller.replica import lifecycle

__all__ = ["lifecycle"]
