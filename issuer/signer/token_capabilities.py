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

#: The CKF_ flags of a CK_MECHANISM_INFO we act on (PKCS#11 2.40, section 5.10).
_FLAGS = {
    "sign": 0x800,
    "verify": 0x2000,
    "generate_key_pair": 0x10000,
    "wrap": 0x20000,
    "unwrap": 0x40000,
    "digest": 0x400,
}


@dataclass(frozen=True)
class MechanismInfo:
    """One mechanism as the token lists it: key sizes (bits, or bytes for some tokens' AES) and the
    functions it is offered for (``sign``, ``generate_key_pair``, ``unwrap`` ...)."""

    min_key_size: int
    max_key_size: int
    functions: frozenset[str]

    @classmethod
    def read(cls, min_key_size: int, max_key_size: int, flags: int) -> MechanismInfo:
        """From C_GetMechanismInfo's answer. Every CKF_ flag of the standard fits in 32 bits; SoftHSM2
        2.6.1 sets only some bits of an AES or DES3 mechanism's flags in the caller's unzeroed struct,
        so the rest is stack garbage (measured: 0x7ffd2ab6e0e8, "unwrap" set one run and not the
        next). Flags beyond 32 bits are taken as unknown: the mechanism is listed for nothing."""
        if not 0 <= flags <= 0xFFFFFFFF:
            return cls(min_key_size, max_key_size, frozenset())
        return cls(min_key_size, max_key_size, frozenset(n for n, bit in _FLAGS.items() if flags & bit))


_GENERATION = {"ec": "EC_KEY_PAIR_GEN", "rsa": "RSA_PKCS_KEY_PAIR_GEN", "ed25519": "EC_EDWARDS_KEY_PAIR_GEN"}
_KEY_BITS = {"ec": {"ecdsa-p256": 256, "ecdsa-p384": 384}, "ed25519": {"ed25519": 255}}


def _key_bits(algorithm: Algorithm) -> int:
    if algorithm.family == "rsa":
        return algorithm.rsa_bits
    return _KEY_BITS[algorithm.family][algorithm.value]


def _fits(info: MechanismInfo, bits: int, function: str) -> bool:
    if function not in info.functions:
        return False
    if info.max_key_size <= 0:
        return True  # the token gives no sizes: the generation or the signature will say
    sizes = {bits}
    if bits == _KEY_BITS["ed25519"]["ed25519"]:
        sizes.add(256)  # Ed25519 keys are listed as 255 or 256 bits (SoftHSM2 2.6.1: 256-456)
    if bits in (256, 384):
        sizes.add(bits // 8)  # some tokens list EC sizes in bytes
    return any(info.min_key_size <= size <= info.max_key_size for size in sizes)


@dataclass(frozen=True)
class SigningPlan:
    """How one signature is made on one token: the mechanism, and whether the digest (and, for
    PKCS#1 v1.5 over the raw ``CKM_RSA_PKCS``, its DER DigestInfo) is computed here first."""

    mechanism: str
    digest_here: bool = False
    digest_info: bool = False


def signing_plan(
    algorithm: Algorithm, hash_name: str | None, pss: bool, mechanisms: Mapping[str, MechanismInfo]
) -> SigningPlan | None:
    """The best way ``mechanisms`` offer to sign with an ``algorithm`` key and ``hash_name``:
    hash-and-sign where the token lists it for the key size, else the raw mechanism over a digest
    computed here; ``None`` when the token offers neither."""
    bits = _key_bits(algorithm)

    def offered(name: str) -> bool:
        info = mechanisms.get(name)
        return info is not None and _fits(info, bits, "sign")

    if algorithm.family == "ed25519":
        return SigningPlan("EDDSA") if offered("EDDSA") else None
    if hash_name is None:
        return None
    digest = hash_name.upper()
    if algorithm.family == "ec":
        combined, raw, info = f"ECDSA_{digest}", "ECDSA", False
    elif pss:
        combined, raw, info = f"{digest}_RSA_PKCS_PSS", "RSA_PKCS_PSS", False
    else:
        combined, raw, info = f"{digest}_RSA_PKCS", "RSA_PKCS", True
    if offered(combined):
        return SigningPlan(combined)
    if offered(raw):
        return SigningPlan(raw, digest_here=True, digest_info=info)
    return None


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
    (with its certificate signature hash) and with which mechanism (see :func:`signing_plan`)."""
    bits = _key_bits(algorithm)
    gen_name = _GENERATION[algorithm.family]
    gen = mechanisms.get(gen_name)
    can_generate = gen is not None and _fits(gen, bits, "generate_key_pair")
    digest = algorithm.signature_hash()
    plan = signing_plan(algorithm, digest.name if digest else None, False, mechanisms)
    missing = []
    if not can_generate:
        missing.append(f"no CKM_{gen_name} for {bits}-bit keys")
    if plan is None:
        if algorithm.family == "ed25519":
            offered = "CKM_EDDSA"
        elif algorithm.family == "ec":
            offered = f"CKM_ECDSA_{digest.name.upper() if digest else ''} or CKM_ECDSA"
        else:
            offered = f"CKM_{digest.name.upper() if digest else ''}_RSA_PKCS or CKM_RSA_PKCS"
        missing.append(f"no {offered} for {bits}-bit keys")
    return AlgorithmSupport(
        algorithm,
        can_generate,
        plan.mechanism if plan else "",
        plan.digest_here if plan else False,
        "; ".join(missing),
    )


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
    module: str = ""
    key_wraps: tuple[str, ...] = ()
    quirks: str = ""
    session_keys: bool | None = None

    @property
    def can_import(self) -> bool:
        """Can a wrapped CA key be imported: RSA-OAEP unwraps the AES key, which unwraps the CA key."""
        return self.unwrap_rsa_oaep and bool(self.key_wraps)

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
            "module": self.module,
            "unwrap": {
                "rsaOAEP": self.unwrap_rsa_oaep,
                "aesKeyWrapPad": self.unwrap_aes_kwp,
                "keyWraps": list(self.key_wraps),
                "importPossible": self.can_import,
            },
            "sessionKeys": self.session_keys,
            "quirks": self.quirks or None,
            "objectsLeftBehind": self.objects_left_behind,
            "mechanisms": list(self.mechanisms),
        }


def unwrap_offered(mechanisms: Mapping[str, MechanismInfo], name: str) -> bool:
    """Is ``name`` listed with the unwrap function?"""
    info = mechanisms.get(name)
    return info is not None and "unwrap" in info.functions


# -- one token, as read once per process ---------------------------------------------------------------


@dataclass(frozen=True)
class ModuleQuirks:
    """What a PKCS#11 module does that neither its info nor its mechanism list says. Every entry of
    :data:`QUIRKS` is shown by a test on that module's token (``tests/tokens``)."""

    #: The public key template must leave CKA_VERIFY, CKA_ENCRYPT and CKA_WRAP to the token.
    public_usage_left_to_token: bool = False
    #: Key objects are created by one process at a time (the module's store locks).
    serialize_object_creation: bool = False
    #: Each process loads the token's objects once, at C_Initialize: keys another process creates or
    #: destroys afterwards stay unseen (or seen) until the module is initialised again.
    objects_loaded_at_initialize: bool = False
    #: A private key has no secret-value attributes at all: reading one answers "type invalid", which
    #: is as much a refusal as "sensitive".
    secret_attributes_absent: bool = False
    #: Why, in a sentence, for `hsm probe` and the docs.
    note: str = ""


#: By the module's manufacturer, as C_GetInfo gives it (the token's own manufacturer is the TPM
#: vendor or the HSM's, and says nothing about the module's code).
QUIRKS: dict[str, ModuleQuirks] = {
    "tpm2-software.github.io": ModuleQuirks(
        public_usage_left_to_token=True,
        serialize_object_creation=True,
        objects_loaded_at_initialize=True,
        secret_attributes_absent=True,
        note=(
            "tpm2-pkcs11 1.9 answers CKR_GENERAL_ERROR ('attr mismatch') to an explicit CKA_VERIFY, "
            "CKA_ENCRYPT or CKA_WRAP in a public key template; its SQLite store answers 'database is "
            "locked' to two processes creating keys at once; a process sees the objects its store held "
            "at C_Initialize, not those other processes create or destroy later; a private key has no "
            "CKA_VALUE or CKA_PRIVATE_EXPONENT (type invalid, not sensitive)"
        ),
    ),
}

#: Attributes added in PKCS#11 2.40 that a 2.20 module does not know (opencryptoki 3.8.1 answers
#: CKR_ATTRIBUTE_TYPE_INVALID to CKA_COPYABLE): left out of its templates, and not read back.
V240_ATTRIBUTES = frozenset({"CKA_COPYABLE"})


@dataclass(frozen=True)
class TokenTraits:
    """What one token says of itself (module info, token info, mechanisms), read once per process,
    and the decisions made from it: templates, signing mechanisms, unwrap, refusals."""

    module_manufacturer: str
    cryptoki_version: tuple[int, int]
    token_name: str
    mechanisms: Mapping[str, MechanismInfo]

    @property
    def quirks(self) -> ModuleQuirks:
        return QUIRKS.get(self.module_manufacturer, ModuleQuirks())

    @property
    def omitted_attributes(self) -> frozenset[str]:
        """Attributes left out of every template for this token (unknown to its PKCS#11 version)."""
        return V240_ATTRIBUTES if self.cryptoki_version < (2, 40) else frozenset()

    def support(self, algorithm: Algorithm) -> AlgorithmSupport:
        return algorithm_support(algorithm, self.mechanisms)

    def require(self, algorithm: Algorithm) -> None:
        """Refuse, naming the token and what it lacks, an algorithm it cannot generate and sign."""
        support = self.support(algorithm)
        if not support.usable:
            raise IssuerError(
                f"{self.token_name} cannot hold {algorithm.value} CA keys: {support.why_not}; "
                f"choose an algorithm it offers ({', '.join(self.usable_algorithms()) or 'none'})",
                Reason.MECHANISM_NOT_SUPPORTED,
            )

    def usable_algorithms(self) -> list[str]:
        return [a.value for a in Algorithm if self.support(a).usable]

    def plan(self, algorithm: Algorithm, hash_name: str | None, pss: bool) -> SigningPlan:
        plan = signing_plan(algorithm, hash_name, pss, self.mechanisms)
        if plan is None:
            kind = "RSA-PSS" if pss else algorithm.family.upper()
            raise IssuerError(
                f"{self.token_name} offers no mechanism to sign {kind} with {hash_name or 'no digest'} "
                f"using a {algorithm.value} key",
                Reason.MECHANISM_NOT_SUPPORTED,
            )
        return plan

    def key_wraps(self) -> tuple[str, ...]:
        """The AES key-wrap mechanisms this token unwraps a private key with, best first: RFC 5649
        key wrap with padding (integrity-protected), else AES-CBC with PKCS#7 padding."""
        return tuple(
            name for name in ("AES_KEY_WRAP_PAD", "AES_CBC_PAD") if unwrap_offered(self.mechanisms, name)
        )
