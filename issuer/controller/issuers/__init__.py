"""Our own issuers (TrustedIssuer, TrustedClusterIssuer): reconcile, rotation, provisioned CAs."""
