"""The only module that imports ``pkcs11``: modules, tokens, sessions, CA keys and raw signatures.

Every PKCS#11 exception is mapped once, in :func:`classify`, to the error vocabulary of
``issuer.errors``. Callers get plain data (``KeyHandle``, public keys, signature bytes) and never a
PKCS#11 object. Use this module from one thread per process: python-pkcs11 0.10.1 with SoftHSM2 2.6.1
crashes when two threads sign on two sessions at once, so concurrency comes from worker processes.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import os
import re
import secrets
import stat
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pkcs11
import pkcs11.exceptions as p11err
from asn1crypto.core import ObjectIdentifier, OctetString
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11.constants import DEFAULT
from pkcs11.util.ec import encode_ec_public_key, encode_named_curve_parameters

from issuer.errors import (
    ConfigurationError,
    IssuerError,
    PermanentError,
    Reason,
    RetryableError,
    TrustedIssuerError,
)
from issuer.signer.key_wrapping import WrappedKey, check_wrapped_for, oaep_hash
from issuer.signer.keys import (
    KEY_WRAPS,
    Algorithm,
    KeyHandle,
    KeyReport,
    PublicKey,
    public_key_fingerprint,
    wrap_parameter,
)
from issuer.signer.token_capabilities import (
    GENERATED_ONLY,
    AlgorithmSupport,
    MechanismInfo,
    TokenProbe,
    TokenTraits,
    check_private_key_protection,
    unwrap_offered,
)
from issuer.tokens import TokenConfig

ED25519_OID = "1.3.101.112"
LABEL_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,127}$")

# Attributes every CA private key is created with: it can sign and do nothing else, and never leaves
# the token. MODIFIABLE=false stops anyone from granting it decrypt/unwrap later; COPYABLE=false stops a
# C_CopyObject into a key with weaker attributes.
PRIVATE_KEY_TEMPLATE: dict[Attribute, Any] = {
    Attribute.TOKEN: True,
    Attribute.PRIVATE: True,
    Attribute.SENSITIVE: True,
    Attribute.EXTRACTABLE: False,
    Attribute.SIGN: True,
    Attribute.SIGN_RECOVER: False,
    Attribute.DECRYPT: False,
    Attribute.UNWRAP: False,
    Attribute.DERIVE: False,
    Attribute.MODIFIABLE: False,
    Attribute.COPYABLE: False,
}
PUBLIC_KEY_TEMPLATE: dict[Attribute, Any] = {
    Attribute.TOKEN: True,
    Attribute.PRIVATE: False,
    Attribute.VERIFY: True,
    Attribute.ENCRYPT: False,
    Attribute.WRAP: False,
    Attribute.DERIVE: False,
    Attribute.MODIFIABLE: False,
}

# A wrapping key's private half opens wrapped CA keys and does nothing else: it cannot decrypt (so it is
# no oracle for arbitrary RSA ciphertexts) nor sign, and it never leaves the token.
WRAPPING_PRIVATE_TEMPLATE: dict[Attribute, Any] = {
    **PRIVATE_KEY_TEMPLATE,
    Attribute.SIGN: False,
    Attribute.UNWRAP: True,
}
WRAPPING_PUBLIC_TEMPLATE: dict[Attribute, Any] = {**PUBLIC_KEY_TEMPLATE, Attribute.VERIFY: False}
WRAPPING_KEY_BITS = 3072
# The AES key that the wrapping key opens lives only in the session, and can only unwrap the CA key.
_TRANSPORT_KEY_TEMPLATE: dict[Attribute, Any] = {
    Attribute.TOKEN: False,
    Attribute.PRIVATE: True,
    Attribute.SENSITIVE: True,
    Attribute.EXTRACTABLE: False,
    Attribute.UNWRAP: True,
    Attribute.WRAP: False,
    Attribute.ENCRYPT: False,
    Attribute.DECRYPT: False,
    Attribute.SIGN: False,
    Attribute.VERIFY: False,
    Attribute.DERIVE: False,
}
# C_UnwrapKey of a private key: the generated CA key's template, without the public-key capabilities
# python-pkcs11 adds to every unwrap template (a private key object has no CKA_ENCRYPT/VERIFY/WRAP, and
# SoftHSM2 answers CKR_ATTRIBUTE_TYPE_INVALID to them). DEFAULT makes python-pkcs11 leave them out.
_UNWRAPPED_KEY_TEMPLATE: dict[Attribute, Any] = {
    **PRIVATE_KEY_TEMPLATE,
    Attribute.ENCRYPT: DEFAULT,
    Attribute.VERIFY: DEFAULT,
    Attribute.WRAP: DEFAULT,
}
_OAEP_PARAMETERS: dict[str, tuple[Mechanism, Any, None]] = {
    "sha1": (Mechanism.SHA_1, pkcs11.MGF.SHA1, None),
    "sha256": (Mechanism.SHA256, pkcs11.MGF.SHA256, None),
}
# What a token answers when it will not do RSA-OAEP with these parameters (SoftHSM2 2.6.1 with SHA-256:
# CKR_ARGUMENTS_BAD, measured).
_PARAMETER_REFUSALS = (p11err.ArgumentsBad, p11err.MechanismParamInvalid, p11err.MechanismInvalid)
# What a token answers when the ciphertext does not decrypt (a corrupt or foreign blob). SoftHSM2 2.6.1
# answers CKR_GENERAL_ERROR both to an OAEP block that does not decode and to an AES-KWP blob whose
# integrity check fails (measured), so inside C_UnwrapKey that code means a bad blob, not a bad token.
_BAD_CIPHERTEXT = (
    p11err.GeneralError,
    p11err.EncryptedDataInvalid,
    p11err.EncryptedDataLenRange,
    p11err.WrappedKeyInvalid,
    p11err.WrappedKeyLenRange,
    p11err.DataInvalid,
    p11err.DataLenRange,
    p11err.FunctionFailed,
)

# Mapping of python-pkcs11's one-class-per-CKR exceptions to our vocabulary. The classification is ours:
# a broken PIN, token, key or mechanism is the issuer's fault and waits for a person; a lost session or
# a busy device is passing and is retried.
_ISSUER_FAULTS: dict[type[Exception], tuple[Reason, str]] = {
    p11err.PinIncorrect: (Reason.PIN_INCORRECT, "the token rejected the PIN"),
    p11err.PinLocked: (Reason.PIN_LOCKED, "the token's user PIN is locked"),
    p11err.PinExpired: (Reason.PIN_EXPIRED, "the token's user PIN has expired"),
    p11err.PinInvalid: (Reason.PIN_INVALID, "the PIN has characters the token does not accept"),
    p11err.PinLenRange: (Reason.PIN_INVALID, "the PIN's length is outside the token's range"),
    p11err.UserPinNotInitialized: (Reason.PIN_NOT_INITIALIZED, "the token's user PIN was never set"),
    p11err.NoSuchToken: (Reason.TOKEN_NOT_FOUND, "no such token"),
    p11err.TokenNotRecognised: (Reason.TOKEN_NOT_FOUND, "the token is not recognised"),
    p11err.MultipleTokensReturned: (Reason.TOKEN_AMBIGUOUS, "more than one token matches"),
    p11err.NoSuchKey: (Reason.KEY_NOT_FOUND, "the key is not in the token"),
    p11err.MultipleObjectsReturned: (Reason.KEY_AMBIGUOUS, "more than one key matches"),
    p11err.MechanismInvalid: (Reason.MECHANISM_NOT_SUPPORTED, "the token does not support the mechanism"),
    p11err.MechanismParamInvalid: (
        Reason.MECHANISM_NOT_SUPPORTED,
        "the token rejects the mechanism's parameters",
    ),
    p11err.KeySizeRange: (Reason.MECHANISM_NOT_SUPPORTED, "the token does not support this key size"),
    p11err.DomainParamsInvalid: (Reason.MECHANISM_NOT_SUPPORTED, "the token does not support this curve"),
    p11err.FunctionNotSupported: (Reason.MECHANISM_NOT_SUPPORTED, "the token does not support the operation"),
    p11err.KeyTypeInconsistent: (Reason.KEY_INVALID, "the key does not fit the mechanism"),
    p11err.TemplateInconsistent: (Reason.TOKEN_REFUSED, "the token refused the key template"),
    p11err.TemplateIncomplete: (Reason.TOKEN_REFUSED, "the token refused the key template"),
    p11err.AttributeValueInvalid: (Reason.TOKEN_REFUSED, "the token refused an attribute value"),
    p11err.TokenWriteProtected: (Reason.TOKEN_READ_ONLY, "the token is write-protected"),
    p11err.UserNotLoggedIn: (Reason.NOT_LOGGED_IN, "the session is not logged in"),
}
_PASSING_FAULTS: dict[type[Exception], str] = {
    p11err.SessionClosed: "the token session was closed",
    p11err.SessionHandleInvalid: "the token session is no longer valid",
    p11err.SessionCount: "the token has no free sessions",
    p11err.DeviceRemoved: "the token was removed",
    p11err.TokenNotPresent: "the token is not present",
    p11err.DeviceError: "the token reported a device error",
    p11err.DeviceMemory: "the token ran out of memory",
    p11err.HostMemory: "the PKCS#11 module ran out of memory",
    p11err.FunctionFailed: "the token operation failed",
    p11err.GeneralError: "the PKCS#11 module reported a general error",
    p11err.OperationActive: "another token operation is active on the session",
    p11err.ObjectHandleInvalid: "a token object handle became invalid",
    p11err.KeyHandleInvalid: "a token key handle became invalid",
}

#: Faults after which the session (and possibly the module) must be reopened.
SESSION_FAULTS = (
    p11err.SessionClosed,
    p11err.SessionHandleInvalid,
    p11err.DeviceRemoved,
    p11err.TokenNotPresent,
    p11err.DeviceError,
    p11err.ObjectHandleInvalid,
    p11err.KeyHandleInvalid,
    p11err.UserNotLoggedIn,
    p11err.GeneralError,
)


def classify(exc: BaseException, where: str) -> TrustedIssuerError:
    """Translate a python-pkcs11 exception into our error vocabulary, naming ``where`` it happened.

    The message carries the operation and the CKR meaning, never arguments (a PIN, data to sign).
    """
    if isinstance(exc, TrustedIssuerError):
        return exc
    for kind, (reason, text) in _ISSUER_FAULTS.items():
        if isinstance(exc, kind):
            return IssuerError(f"{where}: {text}", reason)
    for kind, text in _PASSING_FAULTS.items():
        if isinstance(exc, kind):
            return RetryableError(f"{where}: {text}", Reason.TOKEN_UNAVAILABLE)
    if isinstance(exc, p11err.PKCS11Error):
        return RetryableError(f"{where}: PKCS#11 error {type(exc).__name__}", Reason.TOKEN_ERROR)
    return RetryableError(f"{where}: unexpected {type(exc).__name__}", Reason.TOKEN_ERROR)


@contextmanager
def token_errors(where: str) -> Iterator[None]:
    """Re-raise any PKCS#11 failure inside the block as our vocabulary, without chaining its arguments."""
    try:
        yield
    except TrustedIssuerError:
        raise
    except p11err.PKCS11Error as exc:
        raise classify(exc, where) from None


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("ascii", "replace").strip().rstrip("\x00").strip()
    return str(value).strip()


@dataclass
class SigningKey:
    """A CA private key found in an open session, ready to sign; bound to that session's lifetime."""

    handle: KeyHandle
    public_key: PublicKey
    _private: Any  # pkcs11 PrivateKey
    traits: TokenTraits

    def sign(
        self,
        data: bytes,
        algorithm: hashes.HashAlgorithm | None,
        *,
        pss: bool = False,
    ) -> bytes:
        """Sign ``data`` inside the token; the result is in the encoding X.509 expects (DER for ECDSA).

        The mechanism is the token's (``TokenTraits.plan``): hash-and-sign where it lists one, else the
        digest is computed here and the raw mechanism signs it (SoftHSM2 2.6.1 has no CKM_ECDSA_SHA256;
        opencryptoki 3.8.1 no CKM_SHA256_RSA_PKCS, so PKCS#1 v1.5 goes through CKM_RSA_PKCS over the
        DER DigestInfo)."""
        family = self.handle.algorithm.family
        if family != "ed25519" and algorithm is None:
            raise PermanentError(f"{family} signatures need a digest algorithm")
        plan = self.traits.plan(self.handle.algorithm, algorithm.name if algorithm else None, pss)
        payload = data
        if plan.digest_here and algorithm is not None:
            payload = hashlib.new(algorithm.name, data).digest()
            if plan.digest_info:
                payload = _DIGEST_INFO_PREFIX[algorithm.name] + payload
        parameter = None
        if pss and algorithm is not None:
            hash_mech, mgf = _PSS_PARAMETERS[algorithm.name]
            parameter = (hash_mech, mgf, algorithm.digest_size)
        with token_errors(f"signing with key {self.handle.key_label!r}"):
            raw = bytes(
                self._private.sign(payload, mechanism=Mechanism[plan.mechanism], mechanism_param=parameter)
            )
        if family == "ec":
            half = len(raw) // 2
            return encode_dss_signature(int.from_bytes(raw[:half]), int.from_bytes(raw[half:]))
        return raw


_PSS_PARAMETERS: dict[str, tuple[Mechanism, Any]] = {
    "sha256": (Mechanism.SHA256, pkcs11.MGF.SHA256),
    "sha384": (Mechanism.SHA384, pkcs11.MGF.SHA384),
    "sha512": (Mechanism.SHA512, pkcs11.MGF.SHA512),
}


class TokenSession:
    """One logged-in read-write session on one token, for use by a single thread."""

    def __init__(self, config: TokenConfig) -> None:
        self.config = config
        self._lib = _load_module(config.module)
        where = f"opening {config.describe()}"
        with token_errors(where):
            if config.token_serial:
                token = self._lib.get_token(token_serial=config.token_serial.encode())
            else:
                token = self._lib.get_token(token_label=config.token_label)
        self.token_label = _text(token.label)
        self.token_serial = _text(token.serial)
        self._token = token
        #: How errors name the token: its manufacturer and model, as its token info gives them.
        self.token_name = f"{_text(token.manufacturer_id)} {_text(token.model)} token {self.token_label!r}"
        #: What the token says it can do, read once per process and token.
        self.traits = _traits(config.module, self._lib, token, self.token_name)
        pin = config.pin.read()
        where = f"logging in to {config.describe()}"
        token_key = (config.module, self.token_serial)
        digest = _pin_digest(pin)
        if (token_key, digest) in _REJECTED:
            # Real tokens lock the PIN after a few failures: a rejected PIN is not tried again until the
            # PIN source holds another one.
            raise IssuerError(
                f"{where}: the token rejected the PIN (not retried until it changes)", "PINIncorrect"
            )
        with token_errors(where):
            try:
                self._session = token.open(rw=True, user_pin=pin)
                _LOGGED_IN[token_key] = digest
            except p11err.PinIncorrect:
                _REJECTED.add((token_key, digest))
                raise
            except p11err.UserAlreadyLoggedIn:
                # PKCS#11 login is per process and token: another profile of this worker logged in
                # already. That PIN was proven; a different one must not ride on its login.
                if not hmac.compare_digest(_LOGGED_IN.get(token_key, b""), _pin_digest(pin)):
                    raise IssuerError(f"{where}: the token rejected the PIN", "PINIncorrect") from None
                self._session = token.open(rw=True)
        del pin
        self._keys: dict[tuple[str, str], SigningKey] = {}
        self._session_keys: bool | None = None

    def close(self) -> None:
        """Close the session; errors on close are irrelevant because the session is gone either way."""
        self._keys.clear()
        with contextlib.suppress(p11err.PKCS11Error):
            self._session.close()

    # -- keys -----------------------------------------------------------------------------------------

    def _handle(
        self, key_label: str, key_id: bytes, algorithm: Algorithm, public_key: PublicKey
    ) -> KeyHandle:
        """The plain handle of a key of this token, as it crosses the wall."""
        return KeyHandle(
            token_label=self.token_label,
            token_serial=self.token_serial,
            key_label=key_label,
            key_id=key_id.hex(),
            algorithm=algorithm,
            public_key_sha256=public_key_fingerprint(public_key),
        )

    def generate_key(self, algorithm: Algorithm, key_label: str) -> KeyHandle:
        """Generate a sign-only, sensitive, non-extractable key pair inside the token.

        The CKA_ID is 16 random bytes, so two keys never share an id even under one label; a label that
        is already taken is refused so that a label always names one key.

        The private key is read back: a token that reports it extractable, not sensitive, not
        CKA_ALWAYS_SENSITIVE or not CKA_NEVER_EXTRACTABLE, or differing from any other boolean of the
        template, has both halves destroyed and ``IssuerError`` (``KeyProtectionRefused``) raised.
        """
        self.traits.require(algorithm)
        self._refuse_taken(key_label)
        key_id = secrets.token_bytes(16)
        common = {Attribute.LABEL: key_label, Attribute.ID: key_id}
        public, private = self._templates(PUBLIC_KEY_TEMPLATE, PRIVATE_KEY_TEMPLATE, common)
        key_type, bits, mechanism = _key_pair_parameters(algorithm, public)
        with (
            token_errors(f"generating a {algorithm.value} key in {self.config.describe()}"),
            self._creating(),
        ):
            pub, priv = self._session.generate_keypair(
                key_type,
                bits,
                mechanism=mechanism,
                public_template=public,
                private_template=private,
                store=True,
            )
        self._check_protection(priv, {**_asked(private), **GENERATED_ONLY}, key_label, (pub, priv))
        public_key = _public_key(pub, algorithm)
        handle = self._handle(key_label, key_id, algorithm, public_key)
        self._keys[(handle.key_id, handle.key_label)] = SigningKey(handle, public_key, priv, self.traits)
        return handle

    def signing_key(self, handle: KeyHandle, *, fresh: bool = False) -> SigningKey:
        """The key a handle names, proven to be that key, cached for the session's lifetime.

        ``fresh`` looks the key up in the token again even when cached: another process may have
        destroyed or replaced it, and a check must see that.

        Refuses a key whose public key does not hash to the recorded fingerprint, or whose private half
        does not produce signatures that the recorded public key verifies: a swapped object in the
        token is an error, never silently used.
        """
        cached = self._keys.get((handle.key_id, handle.key_label))
        if cached is not None and cached.handle == handle and not fresh:
            return cached
        where = f"finding key {handle.key_label!r} (id {handle.key_id})"
        priv, pub = self._key_pair(handle, where)
        public_key = _public_key(pub, handle.algorithm)
        if public_key_fingerprint(public_key) != handle.public_key_sha256:
            raise IssuerError(
                f"{where}: the token's public key does not match the recorded fingerprint "
                f"{handle.public_key_sha256[:16]}…",
                Reason.KEY_MISMATCH,
            )
        key = SigningKey(handle, public_key, priv, self.traits)
        _prove_possession(key)
        self._keys[(handle.key_id, handle.key_label)] = key
        return key

    def find_by_label(self, key_label: str) -> KeyHandle:
        """The handle of the one key pair labelled ``key_label`` (the CLI names keys by label)."""
        with token_errors(f"finding key {key_label!r}"):
            priv = self._session.get_key(object_class=ObjectClass.PRIVATE_KEY, label=key_label)
        return self._describe(priv).handle

    def list_keys(self) -> list[KeyReport]:
        """Every private key in the token with its handle and protection flags."""
        with token_errors(f"listing keys in {self.config.describe()}"):
            found = list(self._session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY}))
        reports = []
        for priv in found:
            try:
                reports.append(self._describe(priv))
            except TrustedIssuerError:
                continue  # keys we cannot describe (unsupported type, no public half) are not ours
        return sorted(reports, key=lambda r: r.handle.key_label)

    def destroy_key(self, handle: KeyHandle) -> None:
        """Destroy both halves of the key pair a handle names (an explicit, irreversible choice)."""
        self.signing_key(handle)  # proves it is the recorded key before anything is destroyed
        key_id = bytes.fromhex(handle.key_id)
        with token_errors(f"destroying key {handle.key_label!r}"), self._creating():
            for obj in list(
                self._session.get_objects({Attribute.ID: key_id, Attribute.LABEL: handle.key_label})
            ):
                obj.destroy()
        self._keys.pop((handle.key_id, handle.key_label), None)

    # -- wrapping keys and imported CA keys ---------------------------------------------------------

    def _refuse_taken(self, key_label: str) -> None:
        _check_label(key_label)
        with token_errors(f"looking up key label {key_label!r}"):
            taken = list(self._session.get_objects({Attribute.LABEL: key_label}))
        if taken:
            raise PermanentError(f"{self.config.describe()} already holds a key labelled {key_label!r}")

    def generate_wrapping_key(self, key_label: str) -> tuple[KeyHandle, bytes, tuple[str, ...]]:
        """Generate an RSA-3072 wrapping key pair whose private half can only unwrap (never decrypt, sign
        or leave the token), persistent under ``key_label``.

        Returns its handle, the DER SubjectPublicKeyInfo, and the wrap parameters this token was just
        seen to accept (each is tried with a throw-away session key).
        """
        self._refuse_import_impossible()
        self._refuse_taken(key_label)
        key_id = secrets.token_bytes(16)
        common = {Attribute.LABEL: key_label, Attribute.ID: key_id}
        public_template, private_template = self._templates(
            WRAPPING_PUBLIC_TEMPLATE, WRAPPING_PRIVATE_TEMPLATE, common
        )
        public_template[Attribute.PUBLIC_EXPONENT] = b"\x01\x00\x01"
        with token_errors(f"generating a wrapping key in {self.config.describe()}"), self._creating():
            pub, priv = self._session.generate_keypair(
                KeyType.RSA,
                WRAPPING_KEY_BITS,
                mechanism=Mechanism.RSA_PKCS_KEY_PAIR_GEN,
                public_template=public_template,
                private_template=private_template,
                store=True,
            )
        asked = {**_asked(private_template), **GENERATED_ONLY}
        self._check_protection(priv, asked, key_label, (pub, priv))
        return self._wrapping_key(pub, priv, key_label, key_id)

    def find_wrapping_key(self, key_label: str) -> tuple[KeyHandle, bytes, tuple[str, ...]]:
        """The wrapping key labelled ``key_label`` (as :meth:`generate_wrapping_key` returns it);
        ``IssuerError(reason="KeyNotFound")`` when there is none."""
        where = f"finding wrapping key {key_label!r}"
        with token_errors(where):
            priv = self._session.get_key(object_class=ObjectClass.PRIVATE_KEY, label=key_label)
            key_id = bytes(priv[Attribute.ID])
            pub = self._session.get_key(object_class=ObjectClass.PUBLIC_KEY, id=key_id, label=key_label)
        return self._wrapping_key(pub, priv, key_label, key_id)

    def _wrapping_key(
        self, pub: Any, priv: Any, key_label: str, key_id: bytes
    ) -> tuple[KeyHandle, bytes, tuple[str, ...]]:
        _check_wrapping_attributes(priv, key_label)
        public = _public_key(pub, Algorithm.RSA_3072)
        assert isinstance(public, rsa.RSAPublicKey)
        handle = self._handle(key_label, key_id, Algorithm.RSA_3072, public)
        spki = public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        key_wraps = [
            name for name, (mechanism, _) in KEY_WRAPS.items() if mechanism in self.traits.key_wraps()
        ]
        accepted = tuple(
            wrap_parameter(oaep, key_wrap)
            for key_wrap in key_wraps
            for oaep in ("sha1", "sha256")
            if self._accepts_oaep(priv, public, oaep)
        )
        return handle, spki, accepted

    def _refuse_import_impossible(self) -> None:
        """Refuse, naming the token and what it lacks, to prepare an import it could never finish."""
        lacks = []
        if not unwrap_offered(self.traits.mechanisms, "RSA_PKCS_OAEP"):
            lacks.append("no C_UnwrapKey with CKM_RSA_PKCS_OAEP")
        if not self.traits.key_wraps():
            lacks.append("no C_UnwrapKey with CKM_AES_KEY_WRAP_PAD or CKM_AES_CBC_PAD")
        if lacks:
            raise IssuerError(
                f"{self.token_name} cannot import a wrapped CA key: {'; '.join(lacks)}; generate the key "
                "in the token instead",
                Reason.MECHANISM_NOT_SUPPORTED,
            )

    def _accepts_oaep(self, priv: Any, public: rsa.RSAPublicKey, hash_name: str) -> bool:
        """Does the token unwrap an RSA-OAEP(``hash_name``) AES key? Measured with a random session key
        wrapped here in software, so the answer is this token's, not a table's."""
        digest = oaep_hash(hash_name)
        probe = public.encrypt(
            secrets.token_bytes(32), padding.OAEP(mgf=padding.MGF1(digest), algorithm=digest, label=None)
        )
        with token_errors(f"trying RSA-OAEP with {hash_name} in {self.config.describe()}"):
            try:
                transport = self._unwrap_transport_key(priv, probe, hash_name)
            except _PARAMETER_REFUSALS:
                return False
            transport.destroy()
        return True

    def _unwrap_transport_key(self, priv: Any, wrapped: bytes, hash_name: str) -> Any:
        return priv.unwrap_key(
            ObjectClass.SECRET_KEY,
            KeyType.AES,
            wrapped,
            mechanism=Mechanism.RSA_PKCS_OAEP,
            mechanism_param=_OAEP_PARAMETERS[hash_name],
            template=_TRANSPORT_KEY_TEMPLATE,
        )

    def _key_pair(self, handle: KeyHandle, where: str) -> tuple[Any, Any]:
        """The private and public objects a recorded handle names (same CKA_ID and label)."""
        self._check_token(handle)
        try:
            key_id = bytes.fromhex(handle.key_id)
        except ValueError:
            raise IssuerError(f"{where}: the recorded key id is not hex", "KeyHandleInvalid") from None
        with token_errors(where):
            priv = self._session.get_key(
                object_class=ObjectClass.PRIVATE_KEY, id=key_id, label=handle.key_label
            )
            pub = self._session.get_key(
                object_class=ObjectClass.PUBLIC_KEY, id=key_id, label=handle.key_label
            )
        return priv, pub

    def _wrapping_private(self, handle: KeyHandle) -> Any:
        """The wrapping private key a handle names, after checking its public half's fingerprint."""
        where = f"finding wrapping key {handle.key_label!r} (id {handle.key_id})"
        priv, pub = self._key_pair(handle, where)
        _check_wrapping_attributes(priv, handle.key_label)
        if public_key_fingerprint(_public_key(pub, Algorithm.RSA_3072)) != handle.public_key_sha256:
            raise IssuerError(
                f"{where}: the token's public key does not match the recorded fingerprint",
                Reason.KEY_MISMATCH,
            )
        return priv

    def unwrap_key(self, wrapping: KeyHandle, wrapped: WrappedKey, key_label: str) -> KeyHandle:
        """Unwrap a CA key into the token under ``key_label``: sensitive, never extractable, sign-only,
        uncopyable (and unmodifiable where the token accepts that at unwrap), with a public key object
        beside it, proven by a signature before it is returned. The transport AES key is a session
        object, destroyed before this returns; on any failure nothing of the import is left behind.

        The new private key is read back before anything else: it must be CKA_SENSITIVE and not
        CKA_EXTRACTABLE, and match every other boolean of its template, or it is destroyed and
        ``IssuerError`` (``KeyProtectionRefused``) names the token and the attribute. CKA_ALWAYS_SENSITIVE
        and CKA_NEVER_EXTRACTABLE are not required: an imported key existed outside the token.

        Idempotent: when ``key_label`` already holds this very key (an earlier call imported it and its
        caller died before recording the handle), that key's handle is returned; any other key under
        the label is refused.
        """
        check_wrapped_for(wrapped, wrapping.public_key_sha256)
        self._refuse_import_impossible()
        if wrapped.key_wrap_mechanism not in self.traits.key_wraps():
            offered = [
                name for name, (mechanism, _) in KEY_WRAPS.items() if mechanism in self.traits.key_wraps()
            ]
            raise IssuerError(
                f"{self.token_name} cannot unwrap {wrapped.parameter}: it has no C_UnwrapKey with "
                f"CKM_{wrapped.key_wrap_mechanism}; wrap the key again with --key-wrap {offered[0]}",
                "WrapParameterNotSupported",
            )
        done = self._already_imported(wrapped, key_label)
        if done is not None:
            return done
        self._refuse_taken(key_label)
        priv_wrapping = self._wrapping_private(wrapping)
        where = f"unwrapping the CA key for {key_label!r} in {self.config.describe()}"
        with token_errors(where):
            try:
                transport = self._unwrap_transport_key(
                    priv_wrapping, wrapped.wrapped_aes_key, wrapped.oaep_hash
                )
            except _PARAMETER_REFUSALS:
                raise IssuerError(
                    f"{where}: the token refuses {wrapped.parameter}; wrap the key again with "
                    f"--oaep-hash {'sha1' if wrapped.oaep_hash == 'sha256' else 'sha256'}",
                    "WrapParameterNotSupported",
                ) from None
            except _BAD_CIPHERTEXT:
                raise IssuerError(
                    f"{where}: the token cannot decrypt the wrapped AES key (corrupt blob, or wrapped for "
                    "another key)",
                    "WrappedKeyInvalid",
                ) from None
        key_id = secrets.token_bytes(16)
        try:
            priv, template = self._unwrap_private(transport, wrapped, key_label, key_id, where)
        finally:
            with token_errors("destroying the session transport key"):
                transport.destroy()
        try:
            # Only what the template asked: an imported key existed outside the token, so it is never
            # CKA_ALWAYS_SENSITIVE nor CKA_NEVER_EXTRACTABLE (opencryptoki 3.8.1 ignores SENSITIVE and
            # EXTRACTABLE in C_UnwrapKey's template: this is where that ends in a refusal).
            self._check_protection(priv, _asked(template), key_label, (priv,))
            return self._adopt_unwrapped(priv, wrapped, key_label, key_id, where)
        except BaseException:
            with contextlib.suppress(p11err.PKCS11Error):
                for obj in list(
                    self._session.get_objects({Attribute.ID: key_id, Attribute.LABEL: key_label})
                ):
                    obj.destroy()
            raise

    def _already_imported(self, wrapped: WrappedKey, key_label: str) -> KeyHandle | None:
        """The handle of this very key if an earlier call imported it under ``key_label`` (the caller
        crashed before recording it): same public key, proven by a signature. Anything else under the
        label is left to :meth:`_refuse_taken`."""
        with token_errors(f"looking up key label {key_label!r}"):
            found = list(
                self._session.get_objects(
                    {Attribute.LABEL: key_label, Attribute.CLASS: ObjectClass.PRIVATE_KEY}
                )
            )
        if len(found) != 1:
            return None
        try:
            handle = self._describe(found[0]).handle
        except TrustedIssuerError:
            return None
        if handle.public_key_sha256 != wrapped.public_key_sha256:
            return None
        self.signing_key(handle)
        return handle

    def _unwrap_private(
        self, transport: Any, wrapped: WrappedKey, key_label: str, key_id: bytes, where: str
    ) -> tuple[Any, dict[Attribute, Any]]:
        """The unwrapped private key and the template the token accepted for it."""
        key_type = KeyType.RSA if wrapped.algorithm.family == "rsa" else KeyType.EC
        _, template = self._templates(
            {}, _UNWRAPPED_KEY_TEMPLATE, {Attribute.LABEL: key_label, Attribute.ID: key_id}
        )
        mechanism = Mechanism[wrapped.key_wrap_mechanism]
        parameter = wrapped.iv or None  # AES-CBC-PAD's IV; AES-KWP takes the default one

        def unwrap() -> Any:
            return transport.unwrap_key(
                ObjectClass.PRIVATE_KEY,
                key_type,
                wrapped.wrapped_private_key,
                mechanism=mechanism,
                mechanism_param=parameter,
                template=template,
            )

        with token_errors(where), self._creating():
            try:
                try:
                    return unwrap(), template
                except p11err.AttributeReadOnly:
                    # SoftHSM2 2.6.1 refuses CKA_MODIFIABLE=false in C_UnwrapKey (measured); the key is
                    # still sign-only, sensitive, non-extractable and uncopyable.
                    del template[Attribute.MODIFIABLE]
                    return unwrap(), template
            except _BAD_CIPHERTEXT:
                raise IssuerError(
                    f"{where}: the token cannot unwrap the CA key (the blob is corrupt or truncated)",
                    "WrappedKeyInvalid",
                ) from None
            except (p11err.KeyTypeInconsistent, p11err.TemplateInconsistent, p11err.AttributeValueInvalid):
                raise IssuerError(
                    f"{where}: the unwrapped key is not the {wrapped.algorithm.value} key the blob names",
                    "WrappedKeyInvalid",
                ) from None

    def _adopt_unwrapped(
        self, priv: Any, wrapped: WrappedKey, key_label: str, key_id: bytes, where: str
    ) -> KeyHandle:
        """Check the unwrapped key against the envelope's public key, prove it signs, and create its
        public key object from the envelope (a token need not expose an EC private key's point)."""
        public = wrapped.public_key()
        mismatch = IssuerError(
            f"{where}: the unwrapped private key does not match the public key in the blob",
            "WrappedKeyInvalid",
        )
        with token_errors(where):
            if isinstance(public, rsa.RSAPublicKey):
                numbers = public.public_numbers()
                if (
                    int.from_bytes(bytes(priv[Attribute.MODULUS])) != numbers.n
                    or int.from_bytes(bytes(priv[Attribute.PUBLIC_EXPONENT])) != numbers.e
                ):
                    raise mismatch
                material: dict[Attribute, Any] = {
                    Attribute.MODULUS: numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8),
                    Attribute.PUBLIC_EXPONENT: numbers.e.to_bytes((numbers.e.bit_length() + 7) // 8),
                }
            else:
                assert isinstance(public, ec.EllipticCurvePublicKey)
                params = encode_named_curve_parameters(public.curve.name)
                if bytes(priv[Attribute.EC_PARAMS]) != params:
                    raise mismatch
                point = public.public_bytes(
                    serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
                )
                material = {Attribute.EC_PARAMS: params, Attribute.EC_POINT: OctetString(point).dump()}
        handle = self._handle(key_label, key_id, wrapped.algorithm, public)
        key = SigningKey(handle, public, priv, self.traits)
        try:
            _prove_possession(key)
        except IssuerError:
            raise mismatch from None
        with token_errors(f"{where}: creating the public key object"):
            self._session.create_object(
                {
                    **PUBLIC_KEY_TEMPLATE,
                    Attribute.CLASS: ObjectClass.PUBLIC_KEY,
                    Attribute.KEY_TYPE: KeyType.RSA if wrapped.algorithm.family == "rsa" else KeyType.EC,
                    Attribute.LABEL: key_label,
                    Attribute.ID: key_id,
                    **material,
                }
            )
        self._keys[(handle.key_id, handle.key_label)] = key
        return handle

    def destroy_wrapping_key(self, handle: KeyHandle) -> None:
        """Destroy both halves of a wrapping key (after its import, or when an import is abandoned)."""
        self._wrapping_private(handle)
        with token_errors(f"destroying wrapping key {handle.key_label!r}"):
            for obj in list(
                self._session.get_objects(
                    {Attribute.ID: bytes.fromhex(handle.key_id), Attribute.LABEL: handle.key_label}
                )
            ):
                obj.destroy()

    # -- inspection (tests and `hsm keys`) -----------------------------------------------------------

    def private_key_attribute(self, handle: KeyHandle, attribute: str) -> Any:
        """Read one attribute of a CA private key as the token answers it (the security tests ask for
        CKA_VALUE and friends and expect a refusal)."""
        key = self.signing_key(handle)
        with token_errors(f"reading {attribute} of key {handle.key_label!r}"):
            try:
                return key._private[Attribute[attribute]]
            except p11err.AttributeSensitive:
                raise PermanentError(
                    f"the token refuses to reveal {attribute}", "AttributeSensitive"
                ) from None
            except p11err.AttributeTypeInvalid:
                if not self.traits.quirks.secret_attributes_absent:
                    raise
                # tpm2-pkcs11: the secret never was an attribute of the object (it lives in the TPM).
                raise PermanentError(
                    f"the token has no {attribute} to reveal (type invalid)", "AttributeSensitive"
                ) from None

    def try_wrap_out(self, handle: KeyHandle) -> None:
        """Attempt to export the CA private key under a fresh AES key with C_WrapKey.

        Exists so tests can prove the token refuses; raises PermanentError(reason="KeyUnextractable")
        when it does (it refuses the key, or has no C_GenerateKey/C_WrapKey to export anything with:
        tpm2-pkcs11 1.9), and returns only if the token wrongly exported the key (the wrapped bytes
        are discarded immediately).
        """
        key = self.signing_key(handle)
        unable = PermanentError(
            "the token cannot export the key: it has no C_GenerateKey or C_WrapKey to export it with",
            "KeyUnextractable",
        )
        with token_errors("creating a session wrapping key"):
            try:
                wrapper = self._session.generate_key(
                    KeyType.AES,
                    256,
                    template={Attribute.TOKEN: False, Attribute.WRAP: True, Attribute.EXTRACTABLE: False},
                )
            except (p11err.FunctionNotSupported, p11err.MechanismInvalid):
                raise unable from None
        try:
            with token_errors(f"wrapping key {handle.key_label!r}"):
                kwp = self.traits.mechanisms.get("AES_KEY_WRAP_PAD")
                try:
                    if kwp is not None and "wrap" in kwp.functions:
                        wrapper.wrap_key(key._private, mechanism=Mechanism.AES_KEY_WRAP_PAD)
                    else:  # opencryptoki has no AES key wrap; CBC-PAD wraps there
                        iv = secrets.token_bytes(16)
                        wrapper.wrap_key(key._private, mechanism=Mechanism.AES_CBC_PAD, mechanism_param=iv)
                except (p11err.KeyUnextractable, p11err.KeyNotWrappable):
                    raise PermanentError("the token refuses to export the key", "KeyUnextractable") from None
                except (p11err.FunctionNotSupported, p11err.MechanismInvalid):
                    raise unable from None
        finally:
            with token_errors("destroying the session wrapping key"):
                wrapper.destroy()

    # -- what the token can do (`hsm probe`) ----------------------------------------------------------

    def probe(self, seconds: float) -> TokenProbe:
        """What this token can do for us, from its module info and mechanism list, with a signing rate
        measured for ``seconds`` (0: none, no key made) per algorithm it can do, on throw-away keys
        destroyed before this
        returns (session keys where the token makes them, else token objects under a ``ti-probe-``
        label): the token holds no new object afterwards (``objects_left_behind`` counts what this
        session still sees beyond what it saw before, and is 0)."""
        where = f"probing {self.config.describe()}"
        traits = self.traits
        with token_errors(where):
            before = len(list(self._session.get_objects({})))
        results = []
        for algorithm in Algorithm:
            support = traits.support(algorithm)
            if support.usable and seconds > 0:
                rate = self._signing_rate(algorithm, seconds)
                support = AlgorithmSupport(
                    algorithm,
                    support.can_generate,
                    support.signing_mechanism,
                    support.digest_here,
                    support.why_not,
                    rate,
                )
            results.append(support)
        with token_errors(where):
            after = len(list(self._session.get_objects({})))
        token = self._token
        return TokenProbe(
            manufacturer=_text(token.manufacturer_id),
            model=_text(token.model),
            firmware=_version(getattr(token, "firmware_version", "")),
            hardware=_version(getattr(token, "hardware_version", "")),
            label=self.token_label,
            serial=self.token_serial,
            algorithms=tuple(results),
            unwrap_rsa_oaep=unwrap_offered(traits.mechanisms, "RSA_PKCS_OAEP"),
            unwrap_aes_kwp=unwrap_offered(traits.mechanisms, "AES_KEY_WRAP_PAD"),
            objects_left_behind=max(0, after - before),
            mechanisms=tuple(sorted(traits.mechanisms)),
            module=f"{traits.module_manufacturer} (PKCS#11 {'.'.join(map(str, traits.cryptoki_version))})",
            key_wraps=tuple(traits.key_wraps()),
            quirks=traits.quirks.note,
            session_keys=self._session_keys,
        )

    def _signing_rate(self, algorithm: Algorithm, seconds: float) -> float:
        """Signatures per second with a throw-away key pair and the token's signing plan."""
        where = f"probing {algorithm.value} in {self.config.describe()}"
        label = f"ti-probe-{secrets.token_hex(6)}"
        key_id = secrets.token_bytes(16)
        common = {Attribute.LABEL: label, Attribute.ID: key_id}
        public, private = self._templates(PUBLIC_KEY_TEMPLATE, PRIVATE_KEY_TEMPLATE, common)
        private[Attribute.MODIFIABLE] = DEFAULT
        key_type, bits, gen = _key_pair_parameters(algorithm, public)
        with token_errors(where), self._creating():
            pub = priv = None
            if self._session_keys is not False:
                try:
                    pub, priv = self._session.generate_keypair(
                        key_type,
                        bits,
                        mechanism=gen,
                        public_template={**public, Attribute.TOKEN: False},
                        private_template={**private, Attribute.TOKEN: False},
                        store=False,
                    )
                    self._session_keys = True
                except (p11err.AttributeValueInvalid, p11err.TemplateInconsistent):
                    # tpm2-pkcs11 makes token objects only (CKA_TOKEN=false: attribute value invalid).
                    self._session_keys = False
            if pub is None or priv is None:
                pub, priv = self._session.generate_keypair(
                    key_type,
                    bits,
                    mechanism=gen,
                    public_template=public,
                    private_template=private,
                    store=True,
                )
        try:
            public_key = _public_key(pub, algorithm)
            handle = self._handle(label, key_id, algorithm, public_key)
            key = SigningKey(handle, public_key, priv, self.traits)
            digest = algorithm.signature_hash()
            data = b"trusted-issuer probe " + secrets.token_bytes(16)
            count, started = 0, time.monotonic()
            while (elapsed := time.monotonic() - started) < seconds or count == 0:
                key.sign(data, digest)
                count += 1
        finally:
            with token_errors(where), self._creating():
                priv.destroy()
                pub.destroy()
        return round(count / max(elapsed, 1e-9), 1)

    # -- internals -----------------------------------------------------------------------------------

    def _templates(
        self,
        public: Mapping[Attribute, Any],
        private: Mapping[Attribute, Any],
        common: Mapping[Attribute, Any],
    ) -> tuple[dict[Attribute, Any], dict[Attribute, Any]]:
        """A key pair's templates as this token accepts them: attributes its PKCS#11 version does not
        know are left out (and so not read back); where the module's quirk says so, the public key's
        usage is left to the token (it is public: nothing to protect). The private key's protection is
        never relaxed here: a token that will not honour it refuses, or is refused on read-back."""
        omitted = {Attribute[name.removeprefix("CKA_")] for name in self.traits.omitted_attributes}
        pub = {a: v for a, v in public.items() if a not in omitted}
        priv = {a: v for a, v in private.items() if a not in omitted}
        if self.traits.quirks.public_usage_left_to_token:
            pub.update({Attribute.VERIFY: DEFAULT, Attribute.ENCRYPT: DEFAULT, Attribute.WRAP: DEFAULT})
        return {**pub, **common}, {**priv, **common}

    @contextmanager
    def _creating(self) -> Iterator[None]:
        """Held while this process creates or destroys token objects. Where the module's store takes
        one writer at a time, it is a lock across worker processes; where each process loads the
        objects once (at C_Initialize), the change is announced so the others load them again."""
        quirks = self.traits.quirks
        if not (quirks.serialize_object_creation or quirks.objects_loaded_at_initialize):
            yield
            return
        module = self.config.module
        with _shared_file(module, "lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                if quirks.objects_loaded_at_initialize and objects_changed_elsewhere(module):
                    # Decide on a current view only (a label taken meanwhile, a key destroyed).
                    raise ObjectsChangedElsewhere(f"{self.token_name} changed in another process")
                yield
            finally:
                if quirks.objects_loaded_at_initialize:
                    changed = uuid.uuid4().hex
                    _shared_file(module, "objects").write_text(changed)
                    _LOADED_AT[module] = changed  # this process's view was current, and has the change
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _check_protection(
        self, priv: Any, asked: Mapping[str, bool], key_label: str, created: tuple[Any, ...]
    ) -> None:
        """Read back the protection attributes of a key this session just made, and destroy ``created``
        before refusing it (see ``token_capabilities.check_private_key_protection``)."""
        flags: dict[str, bool | None] = {}
        with token_errors(f"reading back the attributes of new key {key_label!r}"):
            for name in asked:
                try:
                    flags[name] = bool(priv[Attribute[name.removeprefix("CKA_")]])
                except (p11err.AttributeTypeInvalid, p11err.AttributeSensitive):
                    flags[name] = None
        try:
            check_private_key_protection(flags, asked, self.token_name, key_label)
        except IssuerError:
            with contextlib.suppress(p11err.PKCS11Error):
                for obj in created:
                    obj.destroy()
            raise

    def _check_token(self, handle: KeyHandle) -> None:
        if handle.token_serial and handle.token_serial != self.token_serial:
            raise IssuerError(
                f"key {handle.key_label!r} was recorded in token serial {handle.token_serial!r}, "
                f"but {self.config.describe()} has serial {self.token_serial!r}",
                "TokenMismatch",
            )

    def _describe(self, priv: Any) -> KeyReport:
        with token_errors("describing a key"):
            key_id = bytes(priv[Attribute.ID])
            label = _text(priv[Attribute.LABEL])
            key_type = priv.key_type
            pub = self._session.get_key(object_class=ObjectClass.PUBLIC_KEY, id=key_id)
            flags = [
                bool(priv[a])
                for a in (
                    Attribute.SENSITIVE,
                    Attribute.EXTRACTABLE,
                    Attribute.ALWAYS_SENSITIVE,
                    Attribute.NEVER_EXTRACTABLE,
                )
            ]
        if key_type == KeyType.EC_EDWARDS:
            algorithm = Algorithm.ED25519
            public_key: PublicKey = _public_key(pub, algorithm)
        else:
            with token_errors("reading a public key"):
                if key_type == KeyType.RSA:
                    public_key = _rsa_public_key(pub)
                elif key_type == KeyType.EC:
                    public_key = _ec_public_key(pub)
                else:
                    raise PermanentError(f"unsupported key type {key_type}")
            algorithm = Algorithm.of_public_key(public_key)
        handle = self._handle(label, key_id, algorithm, public_key)
        return KeyReport(handle, *flags)


#: DER DigestInfo headers (RFC 8017, 9.2 note 1): what CKM_RSA_PKCS signs ahead of the digest.
_DIGEST_INFO_PREFIX = {
    "sha256": bytes.fromhex("3031300d060960864801650304020105000420"),
    "sha384": bytes.fromhex("3041300d060960864801650304020205000430"),
    "sha512": bytes.fromhex("3051300d060960864801650304020305000440"),
}


def _key_pair_parameters(
    algorithm: Algorithm, public: dict[Attribute, Any]
) -> tuple[KeyType, int, Mechanism]:
    """Key type, size and generation mechanism of ``algorithm``; adds its domain to ``public``."""
    if algorithm.family == "rsa":
        public[Attribute.PUBLIC_EXPONENT] = b"\x01\x00\x01"
        return KeyType.RSA, algorithm.rsa_bits, Mechanism.RSA_PKCS_KEY_PAIR_GEN
    if algorithm.family == "ec":
        public[Attribute.EC_PARAMS] = encode_named_curve_parameters(algorithm.curve_name)
        return KeyType.EC, 0, Mechanism.EC_KEY_PAIR_GEN
    public[Attribute.EC_PARAMS] = ObjectIdentifier(ED25519_OID).dump()
    return KeyType.EC_EDWARDS, 0, Mechanism.EC_EDWARDS_KEY_PAIR_GEN


#: Per process: what each (module, token serial) said of itself.
_TRAITS: dict[tuple[str, str], TokenTraits] = {}


def _traits(module: str, lib: Any, token: Any, token_name: str) -> TokenTraits:
    """Read (once per process and token) the module's info and the token's mechanism list."""
    key = (module, _text(token.serial))
    known = _TRAITS.get(key)
    if known is not None:
        return known
    with token_errors(f"reading the mechanisms of {token_name}"):
        slot = token.slot
        mechanisms = {}
        for mechanism in slot.get_mechanisms():
            try:
                info = slot.get_mechanism_info(mechanism)
            except p11err.MechanismInvalid:
                continue  # listed but not described: not usable
            name = mechanism.name.lstrip("_") if hasattr(mechanism, "name") else str(mechanism)
            mechanisms[name] = MechanismInfo.read(
                int(info.min_key_length), int(info.max_key_length), int(info.flags)
            )
    version = getattr(lib, "cryptoki_version", (2, 40))
    traits = TokenTraits(
        module_manufacturer=_text(getattr(lib, "manufacturer_id", "")),
        cryptoki_version=(int(version[0]), int(version[1])),
        token_name=token_name,
        mechanisms=mechanisms,
    )
    _TRAITS[key] = traits
    return traits


def _asked(template: Mapping[Attribute, Any]) -> dict[str, bool]:
    """The boolean attributes of a key template, by PKCS#11 name, as the read-back compares them."""
    return {f"CKA_{a.name}": v for a, v in template.items() if isinstance(v, bool)}


def _version(value: Any) -> str:
    if isinstance(value, tuple):
        return ".".join(str(v) for v in value)
    return _text(value)


_MODULES: dict[str, Any] = {}


class ObjectsChangedElsewhere(RetryableError):
    """Another process created or destroyed objects since this one loaded the module (see
    ``ModuleQuirks.objects_loaded_at_initialize``): load it again and repeat the operation."""


#: Per module: the objects generation (see ``TokenSession._creating``) when this process loaded it.
_LOADED_AT: dict[str, str] = {}


def _shared_file(module: str, kind: str) -> Path:
    """A file the worker processes of this user share for one module (a lock, a generation), in a
    directory only this user may enter: nobody else can hold the lock or fake a change."""
    base = Path(os.environ.get("TMPDIR") or "/tmp")  # noqa: S108  # a private directory is made in it
    private = base / f"trusted-issuer-{os.getuid()}"
    with contextlib.suppress(FileExistsError):
        private.mkdir(mode=0o700)
    found = private.lstat()
    if not stat.S_ISDIR(found.st_mode) or found.st_uid != os.getuid() or found.st_mode & 0o077:
        raise ConfigurationError(f"{private} is not a private directory of this user: remove it")
    return private / f"{kind}-{hashlib.sha256(module.encode()).hexdigest()[:16]}"


def _objects_generation(module: str) -> str:
    try:
        return _shared_file(module, "objects").read_text()
    except OSError:
        return ""


def objects_changed_elsewhere(module: str) -> bool:
    """Did another process create or destroy objects since this one loaded ``module``? (Asked only
    of modules that load their objects once per process, ``ModuleQuirks.objects_loaded_at_initialize``.)"""
    return _objects_generation(module) != _LOADED_AT.get(module, "")


#: Per worker process: a keyed digest of the PIN that logged in to each (module, token serial).
_LOGGED_IN: dict[tuple[str, str], bytes] = {}
#: PINs a token refused, by the same keyed digest, never tried twice.
_REJECTED: set[tuple[tuple[str, str], bytes]] = set()
_PIN_DIGEST_KEY = secrets.token_bytes(32)


def _pin_digest(pin: str) -> bytes:
    return hmac.new(_PIN_DIGEST_KEY, pin.encode(), hashlib.sha256).digest()


def _load_module(path: str) -> Any:
    """Load (once per process) the PKCS#11 module at ``path``, initialising it again if
    :func:`reset_module` finalized it."""
    loaded = _MODULES.get(path)
    if loaded is not None:
        if not loaded.initialized:
            _LOADED_AT[path] = _objects_generation(path)
            with token_errors(f"initialising PKCS#11 module {path} again"):
                loaded.initialize()
        return loaded
    if not Path(path).is_file():
        raise ConfigurationError(f"PKCS#11 module {path} does not exist")
    _LOADED_AT[path] = _objects_generation(path)
    try:
        lib = pkcs11.lib(path)
    except p11err.PKCS11Error as exc:
        raise ConfigurationError(f"cannot load PKCS#11 module {path}: {type(exc).__name__}") from None
    _MODULES[path] = lib
    return lib


def reset_module(path: str) -> None:
    """Finalize a module (C_Finalize) so that it reads its slots and tokens anew when next used.

    Every session on the module dies with it. It is initialised again lazily, by the next
    :class:`TokenSession`, so a module that cannot start now (its token storage is gone) fails there,
    classified, rather than here where nobody would see why.
    """
    lib = _MODULES.get(path)
    if lib is None:
        return
    for token_key in [k for k in _LOGGED_IN if k[0] == path]:
        del _LOGGED_IN[token_key]
    with contextlib.suppress(p11err.PKCS11Error):
        lib.finalize()  # python-pkcs11 marks it uninitialised even when C_Finalize fails


def _check_label(label: str) -> None:
    if not LABEL_PATTERN.match(label):
        raise PermanentError(
            f"key label {label!r} is not allowed: use 1 to 128 letters, digits and ._:/@+- "
            "starting with a letter or digit"
        )


def _rsa_public_key(pub: Any) -> rsa.RSAPublicKey:
    modulus = int.from_bytes(bytes(pub[Attribute.MODULUS]))
    exponent = int.from_bytes(bytes(pub[Attribute.PUBLIC_EXPONENT]))
    return rsa.RSAPublicNumbers(exponent, modulus).public_key()


def _ec_public_key(pub: Any) -> ec.EllipticCurvePublicKey:
    key = serialization.load_der_public_key(encode_ec_public_key(pub))
    assert isinstance(key, ec.EllipticCurvePublicKey)
    return key


def _public_key(pub: Any, algorithm: Algorithm) -> PublicKey:
    where = f"reading the {algorithm.value} public key"
    with token_errors(where):
        if algorithm.family == "rsa":
            key: PublicKey = _rsa_public_key(pub)
        elif algorithm.family == "ec":
            key = _ec_public_key(pub)
        else:
            point = bytes(pub[Attribute.EC_POINT])
            raw = bytes(OctetString.load(point)) if len(point) != 32 else point
            key = ed25519.Ed25519PublicKey.from_public_bytes(raw)
    if Algorithm.of_public_key(key) is not algorithm:
        raise IssuerError(f"{where}: the token holds a different kind of key", Reason.KEY_MISMATCH)
    return key


def _check_wrapping_attributes(priv: Any, key_label: str) -> None:
    """A wrapping key must unwrap and do nothing else; any other key under the label is not ours."""
    with token_errors(f"reading the attributes of wrapping key {key_label!r}"):
        flags = {
            a: bool(priv[a])
            for a in (Attribute.UNWRAP, Attribute.SIGN, Attribute.DECRYPT, Attribute.EXTRACTABLE)
        }
    if (
        not flags[Attribute.UNWRAP]
        or flags[Attribute.SIGN]
        or flags[Attribute.DECRYPT]
        or flags[Attribute.EXTRACTABLE]
    ):
        raise IssuerError(
            f"the key labelled {key_label!r} is not an unwrap-only, non-extractable wrapping key",
            Reason.KEY_MISMATCH,
        )


def _prove_possession(key: SigningKey) -> None:
    """Sign a random challenge in the token and verify it with the recorded public key."""
    challenge = b"trusted-issuer key check " + secrets.token_bytes(16)
    algorithm = key.handle.algorithm.signature_hash()
    signature = key.sign(challenge, algorithm)
    public = key.public_key
    try:
        if isinstance(public, ed25519.Ed25519PublicKey):
            public.verify(signature, challenge)
        elif isinstance(public, ec.EllipticCurvePublicKey):
            assert algorithm is not None
            public.verify(signature, challenge, ec.ECDSA(algorithm))
        else:
            assert algorithm is not None
            public.verify(signature, challenge, padding.PKCS1v15(), algorithm)
    except InvalidSignature:
        raise IssuerError(
            f"key {key.handle.key_label!r}: the private key in the token does not match its public key",
            Reason.KEY_MISMATCH,
        ) from None
