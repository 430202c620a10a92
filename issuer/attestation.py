"""Attestation of a wrapping key: evidence that its private half lives in the enclave, and nowhere else.

Before a key server wraps a CA key for a token it must know that the wrapping public key it was handed
belongs to a key that (a) was made inside the trusted environment and (b) can only unwrap there. That
knowledge is *evidence* produced next to the token: in production an SGX/DCAP quote whose 64-byte
REPORTDATA carries :func:`report_data` of the wrapping key, so the quote binds that exact key to an
enclave measurement. A provider is chosen per token profile by name (``attestation: none`` by default).

The ``none`` provider is for tokens that can prove nothing (SoftHSM2 in a pod): its evidence says so in
plain words and carries no data. Nothing here ever fabricates a quote. See docs/provisioning.md for how
an SGX/DCAP provider plugs in and what a key server must verify before it wraps.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from issuer.errors import ConfigurationError, IssuerError

#: Domain separation for the REPORTDATA binding, so a quote made for another purpose never binds a key.
REPORT_DATA_CONTEXT = b"trusted-issuer wrapping key v1\x00"
NONE_STATEMENT = (
    "no hardware evidence: this token cannot prove where the wrapping key lives; compare the "
    "fingerprint out of band (trusted-issuer provision fingerprint) before wrapping"
)


@dataclass(frozen=True)
class Evidence:
    """What a provider says about one wrapping key. Public data: safe for status, logs and events.

    ``hardware`` is true only when ``data`` holds a hardware-signed statement (a quote) that binds
    ``binds_sha256``; a verifier must still check that statement itself and never trust this flag.
    """

    provider: str
    format: str  # "none", or the evidence format, e.g. "sgx-dcap-quote"
    binds_sha256: str  # public_key_fingerprint of the wrapping key the evidence is about
    statement: str  # one line for a person
    hardware: bool = False
    data: str = ""  # base64 of the evidence (a quote); empty for "none"

    def to_status(self) -> dict[str, Any]:
        """The camelCase shape recorded in an issuer's status next to the wrapping key."""
        shaped: dict[str, Any] = {
            "provider": self.provider,
            "format": self.format,
            "bindsPublicKeySHA256": self.binds_sha256,
            "statement": self.statement,
            "hardware": self.hardware,
        }
        if self.data:
            shaped["data"] = self.data
        return shaped

    @classmethod
    def from_status(cls, data: dict[str, Any]) -> Evidence:
        try:
            return cls(
                provider=str(data["provider"]),
                format=str(data["format"]),
                binds_sha256=str(data["bindsPublicKeySHA256"]).lower(),
                statement=str(data.get("statement", "")),
                hardware=bool(data.get("hardware", False)),
                data=str(data.get("data", "")),
            )
        except KeyError as missing:
            raise IssuerError(
                f"recorded attestation evidence lacks {missing.args[0]}", "EvidenceInvalid"
            ) from None


class AttestationProvider(Protocol):
    """Makes evidence for a wrapping key. Runs in the signing worker, next to the token."""

    name: str

    def evidence(self, wrapping_spki_der: bytes, sha256: str) -> Evidence:
        """Evidence binding the wrapping public key (DER SubjectPublicKeyInfo, fingerprint ``sha256``)
        to this environment. Raises ``IssuerError`` (reason ``AttestationFailed``) when it cannot."""
        ...


def report_data(wrapping_spki_der: bytes) -> bytes:
    """The 64 bytes an enclave puts in its report's REPORTDATA to bind a wrapping key: the SHA-256 of a
    context string and the key's DER SubjectPublicKeyInfo, then 32 zero bytes.

    A key server recomputes this from the public key it is about to wrap for and compares it with the
    quote's REPORTDATA; any other public key gives other bytes.
    """
    return hashlib.sha256(REPORT_DATA_CONTEXT + wrapping_spki_der).digest() + bytes(32)


class NoAttestation:
    """The provider for tokens with no hardware root of trust: states that there is no evidence."""

    name = "none"

    def evidence(self, wrapping_spki_der: bytes, sha256: str) -> Evidence:
        return Evidence(provider=self.name, format="none", binds_sha256=sha256, statement=NONE_STATEMENT)


_PROVIDERS: dict[str, Callable[[], AttestationProvider]] = {"none": NoAttestation}


def register_provider(name: str, factory: Callable[[], AttestationProvider]) -> None:
    """Make a provider available to token profiles under ``name`` (an SGX/DCAP build registers its own
    at import time). Registering a name twice is refused so one provider can never shadow another."""
    if name in _PROVIDERS:
        raise ConfigurationError(f"attestation provider {name!r} is already registered")
    _PROVIDERS[name] = factory


def provider_names() -> tuple[str, ...]:
    return tuple(sorted(_PROVIDERS))


def check_provider_name(name: str) -> str:
    """``name`` if a provider of that name is registered, else ConfigurationError naming the choices."""
    if name not in _PROVIDERS:
        raise ConfigurationError(
            f"unknown attestation provider {name!r}: choose one of {', '.join(provider_names())}"
        )
    return name


def provider(name: str) -> AttestationProvider:
    """The provider registered under ``name``."""
    return _PROVIDERS[check_provider_name(name)]()
