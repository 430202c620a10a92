"""Signing requests of others (CertificateRequests, CSRs): reflector, queue, processing, status, Events."""
