"""Key algorithms, key handles and issuer keys: the plain data that describes a CA key in a token.

Nothing here talks to a token; these values cross process boundaries and are written to CRD status.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from issuer.attestation import Evidence
from issuer.errors import ConfigurationError, IssuerError
from issuer.signer.policy import Policy
from issuer.tokens import TokenConfig

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey


class Algorithm(enum.StrEnum):
    """A CA key algorithm; the value is the spelling used on the CLI and in the CRDs."""

    ECDSA_P256 = "ecdsa-p256"
    ECDSA_P384 = "ecdsa-p384"
    RSA_2048 = "rsa-2048"
    RSA_3072 = "rsa-3072"
    RSA_4096 = "rsa-4096"
    ED25519 = "ed25519"

    @property
    def family(self) -> str:
        """``"ec"``, ``"rsa"`` or ``"ed25519"``."""
        return self.value.split("-")[0].replace("ecdsa", "ec")

    @property
    def rsa_bits(self) -> int:
        return int(self.value.split("-")[1]) if self.family == "rsa" else 0

    @property
    def curve_name(self) -> str:
        """The named curve (cryptography's ``EllipticCurve.name``), empty for non-EC keys."""
        return {"ecdsa-p256": "secp256r1", "ecdsa-p384": "secp384r1"}.get(self.value, "")

    def signature_hash(self) -> hashes.HashAlgorithm | None:
        """The digest this key signs certificates with: matched to the curve's strength for ECDSA."""
        if self is Algorithm.ED25519:
            return None
        if self is Algorithm.ECDSA_P384:
            return hashes.SHA384()
        return hashes.SHA256()

    @classmethod
    def parse(cls, text: str) -> Algorithm:
        try:
            return cls(text.strip().lower())
        except ValueError:
            choices = ", ".join(a.value for a in cls)
            raise ConfigurationError(f"unknown key algorithm {text!r}: choose one of {choices}") from None

    @classmethod
    def of_public_key(cls, key: PublicKey) -> Algorithm:
        """The algorithm of a public key, or ConfigurationError if we cannot hold such a CA key."""
        if isinstance(key, ed25519.Ed25519PublicKey):
            return cls.ED25519
        if isinstance(key, ec.EllipticCurvePublicKey):
            by_curve = {"secp256r1": cls.ECDSA_P256, "secp384r1": cls.ECDSA_P384}
            if key.curve.name in by_curve:
                return by_curve[key.curve.name]
        if isinstance(key, rsa.RSAPublicKey) and key.key_size in (2048, 3072, 4096):
            return cls(f"rsa-{key.key_size}")
        raise ConfigurationError(f"unsupported CA key type {type(key).__name__}")


def public_key_fingerprint(key: PublicKey) -> str:
    """SHA-256 of the DER SubjectPublicKeyInfo, lowercase hex: how a CA key is recognised everywhere."""
    spki = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).hexdigest()


@dataclass(frozen=True)
class KeyHandle:
    """Where a CA key lives and how to recognise it again. Never key material: safe for status and logs."""

    token_label: str
    token_serial: str
    key_label: str
    key_id: str  # CKA_ID, lowercase hex
    algorithm: Algorithm
    public_key_sha256: str

    def to_status(self) -> dict[str, str]:
        """The camelCase shape recorded in an issuer's ``status.keyHandle``."""
        return {
            "tokenLabel": self.token_label,
            "tokenSerial": self.token_serial,
            "keyLabel": self.key_label,
            "keyID": self.key_id,
            "algorithm": self.algorithm.value,
            "publicKeySHA256": self.public_key_sha256,
        }

    @classmethod
    def from_status(cls, data: dict[str, Any]) -> KeyHandle:
        try:
            return cls(
                token_label=str(data["tokenLabel"]),
                token_serial=str(data.get("tokenSerial", "")),
                key_label=str(data["keyLabel"]),
                key_id=str(data["keyID"]).lower(),
                algorithm=Algorithm.parse(str(data["algorithm"])),
                public_key_sha256=str(data["publicKeySHA256"]).lower(),
            )
        except KeyError as missing:
            raise IssuerError(f"recorded key handle lacks {missing.args[0]}", "KeyHandleInvalid") from None


#: How the CA key's PKCS#8 is wrapped under the transport AES-256 key: AES key wrap with padding
#: (RFC 5649, integrity-protected), or AES-CBC with PKCS#7 padding for tokens without it (opencryptoki
#: 3.8.1); the unwrapped key is then proven against the envelope's public key either way. By the name
#: the CLI and envelope use, the PKCS#11 mechanism, and the name in a wrap parameter.
KEY_WRAPS: dict[str, tuple[str, str]] = {
    "aes-kwp": ("AES_KEY_WRAP_PAD", "AES-KWP-256"),
    "aes-cbc-pad": ("AES_CBC_PAD", "AES-CBC-PAD-256"),
}


def wrap_parameter(oaep_hash: str, key_wrap: str = "aes-kwp") -> str:
    """A wrap construction as status and the envelope spell it: RSA-OAEP (hash) of a fresh AES-256
    key, then the CA key under that key (``KEY_WRAPS``). Which of them a token accepts is measured."""
    return f"RSA-OAEP-{oaep_hash.upper()}+{KEY_WRAPS[key_wrap][1]}"


def parse_wrap_parameter(parameter: str) -> tuple[str, str] | None:
    """The (OAEP hash, key wrap) of a spelled wrap parameter, or ``None`` for one this version lacks."""
    for oaep in ("sha1", "sha256"):
        for key_wrap in KEY_WRAPS:
            if wrap_parameter(oaep, key_wrap) == parameter:
                return oaep, key_wrap
    return None


@dataclass(frozen=True)
class WrappingKey:
    """A one-time RSA-3072 key pair in the token whose private half can only unwrap, and what an
    administrator needs to wrap a CA key for it: the public key, its fingerprint, the accepted wrap
    parameters, and the attestation evidence. Public data only: safe for status and logs."""

    handle: KeyHandle
    public_pem: str
    sha256: str  # the same fingerprint as handle.public_key_sha256
    parameters: tuple[str, ...]
    evidence: Evidence

    def to_status(self) -> dict[str, Any]:
        """The camelCase shape recorded in an issuer's status while it waits for a wrapped key."""
        return {
            "keyHandle": self.handle.to_status(),
            "publicKeyPEM": self.public_pem,
            "publicKeySHA256": self.sha256,
            "parameters": list(self.parameters),
            "attestation": self.evidence.to_status(),
        }

    @classmethod
    def from_status(cls, data: dict[str, Any]) -> WrappingKey:
        try:
            return cls(
                handle=KeyHandle.from_status(data["keyHandle"]),
                public_pem=str(data["publicKeyPEM"]),
                sha256=str(data["publicKeySHA256"]).lower(),
                parameters=tuple(str(p) for p in data.get("parameters", ())),
                evidence=Evidence.from_status(data["attestation"]),
            )
        except (KeyError, TypeError) as missing:
            raise IssuerError(f"recorded wrapping key lacks {missing}", "KeyHandleInvalid") from None


@dataclass(frozen=True)
class KeyReport:
    """What ``hsm keys`` shows of a key pair: its handle and the protection flags, never material."""

    handle: KeyHandle
    sensitive: bool
    extractable: bool
    always_sensitive: bool
    never_extractable: bool


@dataclass(frozen=True)
class IssuerKey:
    """Everything a worker needs to sign for one issuer: its token, key, CA chain and policy."""

    token: TokenConfig
    key: KeyHandle
    ca_pem: bytes
    policy: Policy = field(default_factory=Policy)
    rsa_pss: bool = False
