"""Validation of externally issued CA certificates and chains (``issuer.signer.chain``), table-driven.

Software keys and certificates built here with cryptography; every case names the rule it breaks and
expects the precise reason a person acts on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from issuer.errors import IssuerError
from issuer.signer.chain import check_imported_ca, check_issuing_chain
from issuer.signer.keys import public_key_fingerprint

NOW = datetime(2031, 3, 4, 5, 6, 7, tzinfo=UTC)
DAY = timedelta(days=1)


@cache
def key(name: str) -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def cert(
    subject: str,
    issuer: str,
    *,
    subject_key: str | None = None,
    signing_key: str | None = None,
    ca: bool = True,
    path_length: int | None = None,
    key_cert_sign: bool = True,
    not_before: datetime = NOW - DAY,
    not_after: datetime = NOW + 365 * DAY,
) -> bytes:
    builder = (
        x509.CertificateBuilder()
        .subject_name(name(subject))
        .issuer_name(name(issuer))
        .public_key(key(subject_key or subject).public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length if ca else None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=not ca,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca and key_cert_sign,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )
    certificate = builder.sign(key(signing_key or issuer), hashes.SHA256())
    return certificate.public_bytes(serialization.Encoding.PEM)


def fingerprint(subject: str) -> str:
    return public_key_fingerprint(key(subject).public_key())


ROOT = cert("root", "root")


@dataclass(frozen=True)
class ChainCase:
    id: str
    certificate: Callable[[], bytes]
    reason: str | None  # None: valid
    root: Callable[[], bytes] = lambda: ROOT
    key: str = "issuing"
    path_length: int | None = None
    intermediates: int = 0


CHAIN_CASES = [
    ChainCase("issuing-directly-under-root", lambda: cert("issuing", "root", path_length=0), None),
    ChainCase(
        "issuing-under-intermediate",
        lambda: cert("issuing", "mid") + cert("mid", "root", path_length=1),
        None,
        intermediates=1,
    ),
    ChainCase(
        "root-repeated-at-the-end-is-dropped",
        lambda: cert("issuing", "mid") + cert("mid", "root") + ROOT,
        None,
        intermediates=1,
    ),
    ChainCase(
        "issuer-may-sign-sub-cas-when-the-chain-allows",
        lambda: cert("issuing", "root", path_length=1),
        None,
        path_length=1,
    ),
    ChainCase("certificate-for-another-key", lambda: cert("other", "root"), "CAKeyMismatch"),
    ChainCase("issuing-not-a-ca", lambda: cert("issuing", "root", ca=False), "CANotCA"),
    ChainCase("issuing-without-keycertsign", lambda: cert("issuing", "root", key_cert_sign=False), "CANotCA"),
    ChainCase("issuing-expired", lambda: cert("issuing", "root", not_after=NOW - DAY), "CAExpired"),
    ChainCase(
        "issuing-not-yet-valid",
        lambda: cert("issuing", "root", not_before=NOW + 2 * DAY),
        "CANotYetValid",
    ),
    ChainCase(
        "intermediate-expired",
        lambda: cert("issuing", "mid") + cert("mid", "root", not_after=NOW - DAY),
        "CAExpired",
    ),
    ChainCase(
        "intermediate-not-a-ca",
        lambda: cert("issuing", "mid") + cert("mid", "root", ca=False),
        "ChainInvalid",
    ),
    ChainCase(
        "intermediate-signature-forged",
        lambda: cert("issuing", "mid", signing_key="mallory") + cert("mid", "root"),
        "ChainInvalid",
    ),
    ChainCase(
        "intermediates-out-of-order",
        lambda: cert("issuing", "mid") + cert("upper", "root") + cert("mid", "upper"),
        "ChainInvalid",
    ),
    ChainCase("intermediate-missing", lambda: cert("issuing", "mid"), "ChainUntrusted"),
    ChainCase(
        "signed-by-another-root-of-the-same-name",
        lambda: cert("issuing", "root", signing_key="impostor-root"),
        "ChainUntrusted",
    ),
    ChainCase(
        "root-given-is-not-self-signed",
        lambda: cert("issuing", "root"),
        "ChainUntrusted",
        root=lambda: cert("root", "elsewhere"),
    ),
    ChainCase(
        "root-path-length-too-short-for-intermediate",
        lambda: cert("issuing", "mid") + cert("mid", "root"),
        "ChainUntrusted",
        root=lambda: cert("root", "root", path_length=0),
    ),
    ChainCase(
        "intermediate-path-length-leaves-no-room-for-sub-cas",
        lambda: cert("issuing", "mid", path_length=1) + cert("mid", "root", path_length=0),
        "ChainInvalid",
        path_length=1,
    ),
    ChainCase(
        "issuing-path-length-below-the-issuers",
        lambda: cert("issuing", "root", path_length=0),
        "ChainInvalid",
        path_length=1,
    ),
    ChainCase("the-root-itself-is-no-intermediate", lambda: ROOT, "CAKeyMismatch"),
    ChainCase("the-roots-own-key", lambda: ROOT, "ChainInvalid", key="root"),
    ChainCase("not-pem", lambda: b"hello", "CAInvalid"),
    ChainCase("two-roots", lambda: cert("issuing", "root"), "CAInvalid", root=lambda: ROOT + ROOT),
]


@pytest.mark.parametrize("case", CHAIN_CASES, ids=[c.id for c in CHAIN_CASES])
def test_check_issuing_chain(case: ChainCase) -> None:
    pem = case.certificate()
    if case.reason is None:
        chain = check_issuing_chain(
            pem, case.root(), fingerprint(case.key), NOW, path_length=case.path_length
        )
        assert public_key_fingerprint(chain.issuer.public_key()) == fingerprint(case.key)  # type: ignore[arg-type]
        assert len(chain.intermediates) == case.intermediates
        assert chain.root.subject == name("root")
        # What leaves carry: issuing + intermediates above the leaf, the root apart.
        assert len(chain.chain_above_leaf()) == 1 + case.intermediates
        return
    with pytest.raises(IssuerError) as caught:
        check_issuing_chain(pem, case.root(), fingerprint(case.key), NOW, path_length=case.path_length)
    assert caught.value.reason == case.reason, caught.value.message


IMPORTED_CASES = [
    ChainCase("self-signed-root", lambda: cert("imported", "imported"), None, key="imported"),
    ChainCase(
        "issuing-with-chain-to-root",
        lambda: cert("imported", "root") + ROOT,
        None,
        key="imported",
    ),
    ChainCase(
        "self-signed-not-ca",
        lambda: cert("imported", "imported", ca=False),
        "CANotCA",
        key="imported",
    ),
    ChainCase(
        "self-signed-expired",
        lambda: cert("imported", "imported", not_after=NOW - DAY),
        "CAExpired",
        key="imported",
    ),
    ChainCase("certificate-of-another-key", lambda: cert("other", "other"), "CAKeyMismatch", key="imported"),
    ChainCase(
        "self-signed-signature-broken",
        lambda: cert("imported", "imported", signing_key="mallory"),
        "ChainInvalid",
        key="imported",
    ),
    ChainCase("no-root", lambda: cert("imported", "root"), "ChainUntrusted", key="imported"),
]


@pytest.mark.parametrize("case", IMPORTED_CASES, ids=[c.id for c in IMPORTED_CASES])
def test_check_imported_ca(case: ChainCase) -> None:
    pem = case.certificate()
    if case.reason is None:
        chain = check_imported_ca(pem, fingerprint(case.key), NOW)
        assert public_key_fingerprint(chain.issuer.public_key()) == fingerprint(case.key)  # type: ignore[arg-type]
        return
    with pytest.raises(IssuerError) as caught:
        check_imported_ca(pem, fingerprint(case.key), NOW)
    assert caught.value.reason == case.reason, caught.value.message


def test_messages_name_the_certificate() -> None:
    with pytest.raises(IssuerError) as caught:
        check_issuing_chain(
            cert("issuing", "mid") + cert("mid", "root", not_after=NOW - DAY),
            ROOT,
            fingerprint("issuing"),
            NOW,
        )
    assert "CN=mid" in caught.value.message and "expired" in caught.value.message
