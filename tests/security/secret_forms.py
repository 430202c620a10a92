"""The forms a secret can leak in, and a scanner that looks for every one of them in text.

A ``Secret`` is a name and the strings that would betray it. ``pin_secret`` covers a PIN raw, in
base64 (standard and URL-safe, with and without padding, with and without the PIN file's newline)
and in hex. ``private_key_secret`` covers a private key as PKCS#8 DER (base64 and hex), as PEM
(PKCS#8 and traditional OpenSSL), each PEM body line on its own (a partial dump is still a leak),
and its raw private numbers: an EC scalar, an RSA private exponent and primes, an Ed25519 seed,
each in hex, decimal and base64.

Extension point: the scanner takes any list of secrets, so a known CA key imported into the token
(the wrapped-import path of issue 8) is scanned for by adding ``private_key_secret("ca", key)``.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

#: Shorter forms would match by chance; every form of a real secret here is far longer.
MIN_FORM_LENGTH = 12


@dataclass(frozen=True)
class Secret:
    name: str
    forms: tuple[str, ...]


@dataclass(frozen=True)
class Leak:
    secret: str
    form: str
    where: str
    context: str


def _b64_forms(data: bytes) -> list[str]:
    standard = base64.b64encode(data).decode()
    urlsafe = base64.urlsafe_b64encode(data).decode()
    return [standard, standard.rstrip("="), urlsafe, urlsafe.rstrip("=")]


def _bytes_forms(data: bytes) -> list[str]:
    return [*_b64_forms(data), data.hex()]


def pin_secret(name: str, pin: str) -> Secret:
    """Every form of a PIN: raw, base64 (with and without the file's newline), hex."""
    raw = pin.encode()
    forms = [pin, *_bytes_forms(raw), *_bytes_forms(raw + b"\n")]
    return Secret(name, _distinct(forms))


def _int_forms(value: int) -> list[str]:
    data = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return [str(value), format(value, "x"), *_b64_forms(data)]


def private_key_secret(
    name: str, key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
) -> Secret:
    """Every form of a private key a careless program could print."""
    der = key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    forms = [*_bytes_forms(der)]
    pem_formats = [serialization.PrivateFormat.PKCS8]
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        pem_formats.append(serialization.PrivateFormat.TraditionalOpenSSL)
    public_der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    for private_format in pem_formats:
        pem = key.private_bytes(serialization.Encoding.PEM, private_format, serialization.NoEncryption())
        body = [line for line in pem.decode().splitlines() if not line.startswith("-----")]
        private_der = base64.b64decode("".join(body))
        for index, line in enumerate(body):
            # A PEM line carries 48 bytes of DER. One that holds only public parts (the public point or
            # modulus that private key formats repeat) would also match the CA certificate: skip it.
            covered = private_der[48 * index : 48 * (index + 1)]
            if len(line) >= MIN_FORM_LENGTH and _holds_private_bytes(covered, public_der):
                forms.append(line)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        scalar = key.private_numbers().private_value
        width = (key.curve.key_size + 7) // 8
        forms += [*_int_forms(scalar), scalar.to_bytes(width, "big").hex()]
    elif isinstance(key, rsa.RSAPrivateKey):
        numbers = key.private_numbers()
        for value in (numbers.d, numbers.p, numbers.q, numbers.dmp1, numbers.dmq1, numbers.iqmp):
            forms += _int_forms(value)
    else:
        forms += _bytes_forms(
            key.private_bytes(
                serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
            )
        )
    return Secret(name, _distinct(forms))


def _holds_private_bytes(chunk: bytes, public_der: bytes, window: int = 8) -> bool:
    return any(chunk[i : i + window] not in public_der for i in range(max(1, len(chunk) - window + 1)))


def _distinct(forms: Iterable[str]) -> tuple[str, ...]:
    kept = []
    for form in forms:
        if len(form) < MIN_FORM_LENGTH:
            raise ValueError("a secret form this short would match by chance: use a longer secret")
        if form not in kept:
            kept.append(form)
    return tuple(kept)


class SecretScanner:
    """Looks for every form of every secret in texts; hex forms are matched in any letter case."""

    def __init__(self, secrets: Sequence[Secret]) -> None:
        self.secrets = list(secrets)

    def add(self, secret: Secret) -> None:
        self.secrets.append(secret)

    def scan(self, text: str, where: str) -> list[Leak]:
        leaks: list[Leak] = []
        lowered = text.lower()
        for secret in self.secrets:
            for form in secret.forms:
                hexlike = all(c in "0123456789abcdef" for c in form)
                at = lowered.find(form) if hexlike else text.find(form)
                if at >= 0:
                    context = text[max(0, at - 60) : at].replace(form, "<form>")
                    leaks.append(Leak(secret.name, _describe(form, secret), where, context))
        return leaks

    def scan_all(self, texts: Iterable[tuple[str, str]]) -> list[Leak]:
        """Scan (where, text) pairs; the leaks found, which name the form and place but never print it."""
        found: list[Leak] = []
        for where, text in texts:
            found += self.scan(text, where)
        return found


def _describe(form: str, secret: Secret) -> str:
    # Never the form itself: a failing test must not print the secret it found.
    return f"form #{secret.forms.index(form)} ({len(form)} chars)"
