"""cryptography private-key objects whose ``sign()`` runs inside the token.

cryptography's ``CertificateBuilder.sign()`` and ``CertificateSigningRequestBuilder.sign()`` accept
any subclass of its private-key interfaces and call only ``sign()`` and ``public_key()``; everything
else (the TBS encoding, the AlgorithmIdentifier, the final DER) stays in cryptography's builder, so
no hand-written ASN.1 sits on the signing path. Every other method refuses: these keys have no
private numbers to give.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NoReturn

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from issuer.errors import PermanentError
from issuer.signer.keys import PublicKey

#: ``sign(data, hash_algorithm_or_None, pss=bool) -> signature`` as X.509 encodes it.
SignFunction = Callable[..., bytes]
Data = bytes | bytearray | memoryview


def _refuse(*_args: Any, **_kwargs: Any) -> NoReturn:
    raise PermanentError("a token-held key has no exportable material")


class TokenRSAPrivateKey(rsa.RSAPrivateKey):
    def __init__(self, public: rsa.RSAPublicKey, sign: SignFunction) -> None:
        self._public = public
        self._sign = sign

    def sign(
        self,
        data: Data,
        padding: padding.AsymmetricPadding,
        algorithm: Any,
    ) -> bytes:
        if not isinstance(algorithm, hashes.HashAlgorithm) or isinstance(algorithm, Prehashed):
            raise PermanentError("token keys sign whole messages with a named digest")
        return self._sign(bytes(data), algorithm, pss=isinstance(padding, _PSS))

    def public_key(self) -> rsa.RSAPublicKey:
        return self._public

    @property
    def key_size(self) -> int:
        return self._public.key_size

    decrypt = _refuse
    private_numbers = _refuse
    private_bytes = _refuse

    def __copy__(self) -> TokenRSAPrivateKey:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> TokenRSAPrivateKey:
        return self


class TokenECPrivateKey(ec.EllipticCurvePrivateKey):
    def __init__(self, public: ec.EllipticCurvePublicKey, sign: SignFunction) -> None:
        self._public = public
        self._sign = sign

    def sign(self, data: Data, signature_algorithm: ec.EllipticCurveSignatureAlgorithm) -> bytes:
        algorithm = getattr(signature_algorithm, "algorithm", None)
        if not isinstance(algorithm, hashes.HashAlgorithm):
            raise PermanentError("token keys sign whole messages with ECDSA and a named digest")
        return self._sign(bytes(data), algorithm)

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._public

    @property
    def curve(self) -> ec.EllipticCurve:
        return self._public.curve

    @property
    def key_size(self) -> int:
        return self._public.key_size

    exchange = _refuse
    private_numbers = _refuse
    private_bytes = _refuse

    def __copy__(self) -> TokenECPrivateKey:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> TokenECPrivateKey:
        return self


class TokenEd25519PrivateKey(ed25519.Ed25519PrivateKey):
    def __init__(self, public: ed25519.Ed25519PublicKey, sign: SignFunction) -> None:
        self._public = public
        self._sign = sign

    def sign(self, data: Data) -> bytes:
        return self._sign(bytes(data), None)

    def public_key(self) -> ed25519.Ed25519PublicKey:
        return self._public

    private_bytes = _refuse
    private_bytes_raw = _refuse

    def __copy__(self) -> TokenEd25519PrivateKey:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> TokenEd25519PrivateKey:
        return self


_PSS = padding.PSS

TokenPrivateKey = TokenRSAPrivateKey | TokenECPrivateKey | TokenEd25519PrivateKey


def token_private_key(public: PublicKey, sign: SignFunction) -> TokenPrivateKey:
    """A private-key object for cryptography's builders that signs through ``sign``."""
    if isinstance(public, rsa.RSAPublicKey):
        return TokenRSAPrivateKey(public, sign)
    if isinstance(public, ec.EllipticCurvePublicKey):
        return TokenECPrivateKey(public, sign)
    return TokenEd25519PrivateKey(public, sign)
