"""What a token can do for us, decided from what it says: pure decisions on plain data, no PKCS#11.

``hsm.py`` reads the token (its info, its mechanism list and each mechanism's key sizes and flags, the
attributes of a key it just made) into the plain values here; the decisions are made here, so they are
tested table-driven without a token, and the same code path serves every token.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from issuer.errors import IssuerError, Reason
from issuer.signer.keys import Algorithm

# -- protection of a new private key --------------------------------------------------------------------

#: What a generated CA or wrapping key must report, beyond its template: it was made inside the token
#: and has never been readable.
GENERATED_ONLY = {"CKA_ALWAYS_SENSITIVE": True, "CKA_NEVER_EXTRACTABLE": True}


def check_private_key_protection(
    flags: Mapping[str, bool | None], asked: Mapping[str, bool], token: str, key_label: str
) -> None:
    """Refuse a new private key whose attributes, as the token reads them back, are not what was asked.

    ``flags`` are the attributes read back (``None``: the token did not answer); ``asked`` the boolean
    attributes of the template, plus :data:`GENERATED_ONLY` for a generated key. An unwrapped key cannot
    be always-sensitive nor never-extractable (it existed outside the token), so for it ``asked`` holds
    only its template: CKA_SENSITIVE true and CKA_EXTRACTABLE false among them. ``token`` names the
    token as its info does (manufacturer and model).

    Raises ``IssuerError`` (``KeyProtectionRefused``) naming the token, the key and every attribute
    that differs; the caller destroys the new objects first. Returns ``None`` when all agree.
    """
    wrong = [
        f"{name}={'unreadable' if flags.get(name) is None else str(flags.get(name)).lower()} "
        f"(asked {str(want).lower()})"
        for name, want in sorted(asked.items())
        if flags.get(name) is not want
    ]
    if wrong:
        raise IssuerError(
            f"{token} made key {key_label!r} weaker than its template asked: {', '.join(wrong)}; "
            "the new key was destroyed, and this token cannot hold our CA keys",
            Reason.KEY_PROTECTION_REFUSED,
        )


# -- mechanisms ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MechanismInfo:
    """One mechanism as the token lists it: key sizes (bits, or bytes for some tokens' AES) and the
    functions it is offered for (``sign``, ``generate_key_pair``, ``unwrap`` ...)."""

    min_key_size: int
    max_key_size: int
    functions: frozenset[str]


#: Hash-and-sign mechanisms, by algorithm, best first; then the raw one we feed a digest (ECDSA) or a
#: DigestInfo (PKCS#1 v1.5) computed here.
_SIGNING: dict[str, tuple[tuple[str, ...], str]] = {
    "ecdsa-p256": (("ECDSA_SHA256",), "ECDSA"),
    "ecdsa-p384": (("ECDSA_SHA384",), "ECDSA"),
    "rsa-2048": (("SHA256_RSA_PKCS",), "RSA_PKCS"),
    "rsa-3072": (("SHA256_RSA_PKCS",), "RSA_PKCS"),
    "rsa-4096": (("SHA256_RSA_PKCS",), "RSA_PKCS"),
    "ed25519": (("EDDSA",), ""),
}
_GENERATION = {"ec": "EC_KEY_PAIR_GEN", "rsa": "RSA_PKCS_KEY_PAIR_GEN", "ed25519": "EC_EDWARDS_KEY_PAIR_GEN"}
_KEY_BITS = {"ec": {"ecdsa-p256": 256, "ecdsa-p384": 384}, "ed25519": {"ed25519": 255}}


def _key_bits(algorithm: Algorithm) -> int:
    if algorithm.family == "rsa":
        return algorithm.rsa_bits
    return _KEY_BITS[algorithm.family][algorithm.value]


def _fits(info: MechanismInfo, bits: int, function: str) -> bool:
    sizes = {bits}
    if bits == _KEY_BITS["ed25519"]["ed25519"]:
        sizes.add(256)  # Ed25519 keys are listed as 255 or 256 bits (SoftHSM2 2.6.1: 256-456)
    fits = any(info.min_key_size <= size <= info.max_key_size for size in sizes)
    return fits and function in info.functions


@dataclass(frozen=True)
class AlgorithmSupport:
    """What a token offers for one of our algorithms. ``signing_mechanism`` is empty when it cannot sign;
    ``digest_here`` says the digest (or DigestInfo) is computed outside and the raw mechanism signs it."""

    algorithm: Algorithm
    can_generate: bool
    signing_mechanism: str
    digest_here: bool
    why_not: str = ""
    signatures_per_second: float | None = None

    @property
    def usable(self) -> bool:
        return self.can_generate and bool(self.signing_mechanism)

    def to_json(self) -> dict[str, object]:
        return {
            "algorithm": self.algorithm.value,
            "generate": self.can_generate,
            "signingMechanism": self.signing_mechanism or None,
            "digestOutsideToken": self.digest_here,
            "usable": self.usable,
            "whyNot": self.why_not or None,
            "signaturesPerSecond": self.signatures_per_second,
        }


def algorithm_support(algorithm: Algorithm, mechanisms: Mapping[str, MechanismInfo]) -> AlgorithmSupport:
    """Decide, from the token's mechanism list alone, whether it can generate and sign ``algorithm``
    and with which mechanism: hash-and-sign where offered for the key size, else the raw mechanism over
    a digest computed here (``CKM_ECDSA``) or a DigestInfo (``CKM_RSA_PKCS``)."""
    bits = _key_bits(algorithm)
    gen_name = _GENERATION[algorithm.family]
    gen = mechanisms.get(gen_name)
    can_generate = gen is not None and _fits(gen, bits, "generate_key_pair")
    combined, raw = _SIGNING[algorithm.value]
    chosen, digest_here = "", False
    for name in combined:
        info = mechanisms.get(name)
        if info is not None and _fits(info, bits, "sign"):
            chosen = name
            break
    else:
        info = mechanisms.get(raw) if raw else None
        if info is not None and _fits(info, bits, "sign"):
            chosen, digest_here = raw, True
    missing = []
    if not can_generate:
        missing.append(f"no CKM_{gen_name} for {bits}-bit keys")
    if not chosen:
        offered = " or ".join(f"CKM_{n}" for n in (*combined, raw) if n)
        missing.append(f"no {offered} for {bits}-bit keys")
    return AlgorithmSupport(algorithm, can_generate, chosen, digest_here, "; ".join(missing))


@dataclass(frozen=True)
class TokenProbe:
    """What ``hsm probe`` reports of a token: its info, our algorithms, unwrap, and how many objects
    the probe left behind (it makes session keys only, and destroys them)."""

    manufacturer: str
    model: str
    firmware: str
    hardware: str
    label: str
    serial: str
    algorithms: tuple[AlgorithmSupport, ...]
    unwrap_rsa_oaep: bool
    unwrap_aes_kwp: bool
    objects_left_behind: int = 0
    mechanisms: tuple[str, ...] = field(default=())

    def to_json(self) -> dict[str, object]:
        return {
            "token": {
                "manufacturer": self.manufacturer,
                "model": self.model,
                "firmware": self.firmware,
                "hardware": self.hardware,
                "label": self.label,
                "serial": self.serial,
            },
            "algorithms": [a.to_json() for a in self.algorithms],
            "unwrap": {"rsaOAEP": self.unwrap_rsa_oaep, "aesKeyWrapPad": self.unwrap_aes_kwp},
            "objectsLeftBehind": self.objects_left_behind,
            "mechanisms": list(self.mechanisms),
        }


def unwrap_offered(mechanisms: Mapping[str, MechanismInfo], name: str) -> bool:
    """Is ``name`` listed with the unwrap function?"""
    info = mechanisms.get(name)
    return info is not None and "unwrap" in info.functions
