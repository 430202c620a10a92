"""Builders of PKCS#10 requests with real software keys, in the shapes cert-manager sends."""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Sequence
from functools import cache

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

LeafKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
LEAF_KEY_TYPES = ("ecdsa-p256", "ecdsa-p384", "ecdsa-p521", "rsa-2048", "rsa-3072", "ed25519")


@cache
def leaf_key(kind: str) -> LeafKey:
    """One key per kind for the whole run: RSA generation is slow and the key's freshness is irrelevant."""
    if kind.startswith("rsa-"):
        return rsa.generate_private_key(public_exponent=65537, key_size=int(kind.split("-")[1]))
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    curve = {"ecdsa-p256": ec.SECP256R1(), "ecdsa-p384": ec.SECP384R1(), "ecdsa-p521": ec.SECP521R1()}[kind]
    return ec.generate_private_key(curve)


def make_csr(
    *,
    key: LeafKey | None = None,
    common_name: str | None = None,
    dns: Sequence[str] = (),
    ips: Sequence[str] = (),
    uris: Sequence[str] = (),
    emails: Sequence[str] = (),
    other_names: Sequence[x509.OtherName] = (),
    extensions: Sequence[tuple[x509.ExtensionType, bool]] = (),
) -> bytes:
    """A signed PEM CSR with the given subject and SANs."""
    key = key or leaf_key("ecdsa-p256")
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)] if common_name else []
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attributes))
    names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    names += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    names += [x509.UniformResourceIdentifier(u) for u in uris]
    names += [x509.RFC822Name(e) for e in emails]
    names += list(other_names)
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=not attributes)
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(key, algorithm).public_bytes(serialization.Encoding.PEM)


def pem_armour(label: str, der: bytes) -> bytes:
    """PEM-encode arbitrary DER (tests use it for deliberately broken objects that no builder makes)."""
    body = base64.encodebytes(der).replace(b"\n", b"")
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return b"\n".join([f"-----BEGIN {label}-----".encode(), *lines, f"-----END {label}-----".encode(), b""])
