"""Software CA certificates for tests of what the controller keeps of them (no token)."""

from __future__ import annotations

from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from issuer.signer.keys import public_key_fingerprint


def ca_certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    now: datetime,
    *,
    signer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None = None,
    public: ec.EllipticCurvePublicKey | None = None,
    days: int = 365,
    path_length: int | None = None,
    issued_days_ago: int = 1,
) -> x509.Certificate:
    """A CA certificate (CA:true, keyCertSign) for ``key``, self-signed unless ``signer`` is given."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    issuer_cert, issuer_key = signer if signer else (None, key)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_cert.subject if issuer_cert else name)
        .public_key(public or key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=issued_days_ago))
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), True)
        .sign(issuer_key, hashes.SHA256())
    )


def fingerprint(key: ec.EllipticCurvePrivateKey) -> str:
    return public_key_fingerprint(key.public_key())
