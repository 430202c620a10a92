"""Validation of CA certificates that arrive from outside: an imported key's certificate, and the
certificate and chain an offline root returned for an intermediate CA's CSR.

Pure functions over PEM, the token key's fingerprint and a clock. Every link is checked with
cryptography (``verify_directly_issued_by``: issuer name and signature with the parent's public key);
the CA rules (CA:true, keyCertSign, path lengths, validity) are checked here, per certificate, so each
failure names the certificate and the rule. ``cryptography.x509.verification`` is not used: it
verifies end-entity certificates and refuses a CA certificate as the leaf of a path.

Reasons (``IssuerError.reason``): ``CAKeyMismatch``, ``CANotCA``, ``CAExpired``, ``CANotYetValid``,
``ChainInvalid`` (a link inside the given chain is broken), ``ChainUntrusted`` (the chain does not
reach the given root), and ``CAInvalid`` (not PEM, unparseable).
"""

from __future__ import annotations

import itertools
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from issuer.errors import IssuerError
from issuer.signer.certificates import BACKDATE, CAChain, load_certificates
from issuer.signer.keys import public_key_fingerprint


def describe(cert: x509.Certificate) -> str:
    """A short name of a certificate for messages: its subject."""
    return f"certificate {cert.subject.rfc4514_string() or '(empty subject)'!r}"


def _constraints(cert: x509.Certificate) -> x509.BasicConstraints | None:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return None


def _check_is_ca(cert: x509.Certificate, reason: str) -> x509.BasicConstraints:
    constraints = _constraints(cert)
    if constraints is None or not constraints.ca:
        raise IssuerError(f"{describe(cert)} is not a CA (basicConstraints CA:true missing)", reason)
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return constraints  # RFC 5280 allows a CA without keyUsage; then nothing forbids signing
    if not usage.key_cert_sign:
        raise IssuerError(f"{describe(cert)} is a CA without keyCertSign in its keyUsage", reason)
    return constraints


def _check_validity(cert: x509.Certificate, now: datetime) -> None:
    if now >= cert.not_valid_after_utc:
        raise IssuerError(f"{describe(cert)} expired at {cert.not_valid_after_utc.isoformat()}", "CAExpired")
    if now + BACKDATE < cert.not_valid_before_utc:
        raise IssuerError(
            f"{describe(cert)} is not valid before {cert.not_valid_before_utc.isoformat()}",
            "CANotYetValid",
        )


def _issued_by(child: x509.Certificate, parent: x509.Certificate) -> str | None:
    """Why ``parent`` did not issue ``child`` (name or signature), or None if it did."""
    if child.issuer != parent.subject:
        return (
            f"{describe(child)} names issuer {child.issuer.rfc4514_string()!r}, "
            f"not {parent.subject.rfc4514_string()!r}"
        )
    try:
        child.verify_directly_issued_by(parent)
    except InvalidSignature:
        return f"the signature of {describe(child)} does not verify with the key of {describe(parent)}"
    except (ValueError, TypeError, UnsupportedAlgorithm) as err:
        return f"{describe(child)} cannot be verified with {describe(parent)}: {err}"
    return None


def _check_key(cert: x509.Certificate, key_fingerprint: str) -> None:
    if public_key_fingerprint(cert.public_key()) != key_fingerprint.lower():  # type: ignore[arg-type]
        raise IssuerError(
            f"the CA {describe(cert)} certifies another public key, not the token key "
            f"{key_fingerprint[:16]}…",
            "CAKeyMismatch",
        )


def _check_issuing(cert: x509.Certificate, key_fingerprint: str, now: datetime) -> x509.BasicConstraints:
    _check_key(cert, key_fingerprint)
    constraints = _check_is_ca(cert, "CANotCA")
    _check_validity(cert, now)
    return constraints


def _load_root(root_pem: bytes) -> x509.Certificate:
    roots = load_certificates(root_pem, what="root CA certificate")
    if len(roots) != 1:
        raise IssuerError(
            f"the root CA bundle holds {len(roots)} certificates; give exactly one", "CAInvalid"
        )
    root = roots[0]
    problem = _issued_by(root, root)
    if problem is not None:
        raise IssuerError(f"the root is not self-signed: {problem}", "ChainUntrusted")
    return root


def check_issuing_chain(
    certificate_pem: bytes,
    root_pem: bytes,
    key_fingerprint: str,
    now: datetime,
    *,
    path_length: int | None = None,
) -> CAChain:
    """Validate the certificate an external CA returned for the token key, up to ``root_pem``.

    ``certificate_pem``: the issuing CA certificate (it must certify the key whose
    ``public_key_fingerprint`` is ``key_fingerprint``, be CA:true with keyCertSign and valid now), then
    any intermediates above it (the root may be repeated at the end; it is dropped). ``root_pem``: one
    self-signed root. ``path_length``: the issuer's own pathLenConstraint, if it will sign sub-CAs;
    every certificate above must leave room for it. Every link must name its parent and verify with
    the parent's key; every parent must be a CA valid now whose path length allows the certificates
    below it. Returns the chain the issuer signs with (issuing, intermediates, root).
    """
    certificates = load_certificates(certificate_pem, what="CA certificate")
    root = _load_root(root_pem)
    if len(certificates) > 1 and certificates[-1] == root:
        certificates = certificates[:-1]
    issuing, intermediates = certificates[0], certificates[1:]
    own = _check_issuing(issuing, key_fingerprint, now)
    if path_length is not None and own.path_length is not None and own.path_length < path_length:
        raise IssuerError(
            f"{describe(issuing)} allows path length {own.path_length}, but the issuer is configured "
            f"for {path_length}",
            "ChainInvalid",
        )
    below_own = path_length or 0
    for depth, (child, parent) in enumerate(itertools.pairwise(certificates), start=1):
        problem = _issued_by(child, parent)
        if problem is not None:
            raise IssuerError(f"the chain is broken: {problem}", "ChainInvalid")
        _check_path(parent, depth + below_own, "ChainInvalid")
        _check_validity(parent, now)
    top = certificates[-1]
    if top == root:
        raise IssuerError(
            f"{describe(top)} is the root itself; an intermediate CA needs a certificate from the root",
            "ChainInvalid",
        )
    problem = _issued_by(top, root)
    if problem is not None:
        raise IssuerError(f"the chain does not reach the given root: {problem}", "ChainUntrusted")
    _check_path(root, len(certificates) + below_own, "ChainUntrusted")
    _check_validity(root, now)
    return CAChain(issuing, tuple(intermediates), root)


def _check_path(parent: x509.Certificate, below: int, reason: str) -> None:
    """``parent`` must be a CA whose pathLenConstraint allows ``below`` CA certificates under it
    (RFC 5280 counts the intermediates that may follow it, not the end-entity certificate)."""
    constraints = _check_is_ca(parent, reason)
    if constraints.path_length is not None and constraints.path_length < below:
        raise IssuerError(
            f"{describe(parent)} has pathLenConstraint {constraints.path_length}, but {below} CA "
            "certificates may stand below it",
            reason,
        )


def check_imported_ca(certificate_pem: bytes, key_fingerprint: str, now: datetime) -> CAChain:
    """Validate the certificate given with an imported key: either a self-signed root for the key, or
    the key's CA certificate followed by its chain ending in the self-signed root.

    The first certificate must certify the token key, be a CA with keyCertSign and be valid now. A
    chain that does not end in a self-signed root is refused with ``ChainUntrusted`` (then give the
    root separately and use :func:`check_issuing_chain`).
    """
    certificates = load_certificates(certificate_pem, what="CA certificate")
    issuing = certificates[0]
    if issuing.issuer == issuing.subject and len(certificates) == 1:
        _check_issuing(issuing, key_fingerprint, now)
        problem = _issued_by(issuing, issuing)
        if problem is not None:
            raise IssuerError(f"the self-signed CA certificate is broken: {problem}", "ChainInvalid")
        return CAChain(issuing, (), issuing)
    if len(certificates) == 1:
        _check_issuing(issuing, key_fingerprint, now)
        raise IssuerError(
            f"{describe(issuing)} is not self-signed and no chain follows it: give the chain up to "
            "the root (ca.crt)",
            "ChainUntrusted",
        )
    root = certificates[-1]
    return check_issuing_chain(
        b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates[:-1]),
        root.public_bytes(serialization.Encoding.PEM),
        key_fingerprint,
        now,
    )


def check_provided_chain(
    certificate_pem: bytes,
    root_pem: bytes | None,
    key_fingerprint: str,
    now: datetime,
    *,
    path_length: int | None = None,
) -> CAChain:
    """The CA certificate (and chain) an administrator provided for the token key, with the root apart
    (``root_pem``) or not: :func:`check_issuing_chain` up to a separate root, else
    :func:`check_imported_ca` (also when ``root_pem`` only repeats a self-signed ``certificate_pem``)."""
    if root_pem and not _is_the_root(certificate_pem, root_pem):
        return check_issuing_chain(certificate_pem, root_pem, key_fingerprint, now, path_length=path_length)
    return check_imported_ca(certificate_pem, key_fingerprint, now)


def _is_the_root(certificate_pem: bytes, root_pem: bytes) -> bool:
    """``certificate_pem`` is ``root_pem`` itself, one certificate (a self-signed CA given twice)."""
    try:
        first = x509.load_pem_x509_certificates(certificate_pem)
        return len(first) == 1 and first[0] == x509.load_pem_x509_certificate(root_pem)
    except ValueError:
        return False
