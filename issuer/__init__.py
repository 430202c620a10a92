"""trusted-issuer: a cert-manager external issuer whose CA key never leaves a PKCS#11 token."""

__version__ = "0.1.0"
