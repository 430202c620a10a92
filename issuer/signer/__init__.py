"""The signing core: PKCS#11 tokens, CA keys, X.509 and policy. Knows nothing about Kubernetes."""
