"""How to reach a token: its PKCS#11 module, its label or serial, and where its PIN comes from.

Plain data shared by both rooms: settings and token profiles build it, the controller passes it through
the signer's door, and the signing worker opens the token with it. It sits below both rooms so that
``settings`` and ``profiles`` need nothing of the signer.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from issuer.errors import ConfigurationError


@dataclass(frozen=True)
class PinSource:
    """Where a token's user PIN is read from: a file (preferred) or an environment variable.

    The PIN itself is never stored in this object, so it cannot leak through ``repr``, pickling to a
    worker, or a traceback; it is read at login time only.
    """

    file: Path | None = None
    env: str | None = None

    def read(self) -> str:
        if self.file is not None:
            try:
                text = self.file.read_text(encoding="utf-8")
            except OSError as err:
                raise ConfigurationError(f"cannot read PIN file {self.file}: {err.strerror}") from None
            pin = text.rstrip("\r\n")
            if not pin:
                raise ConfigurationError(f"PIN file {self.file} is empty")
            return pin
        if self.env is not None:
            pin = os.environ.get(self.env, "")
            if not pin:
                raise ConfigurationError(f"environment variable {self.env} holds no PIN")
            return pin
        raise ConfigurationError("no PIN configured: give a PIN file or TRUSTED_ISSUER_PIN")


@dataclass(frozen=True)
class TokenConfig:
    """How to reach one token: the PKCS#11 module, the token (by label or serial) and its PIN source."""

    module: str
    token_label: str | None = None
    token_serial: str | None = None
    pin: PinSource = PinSource()
    #: The attestation provider (``issuer.attestation``) that vouches for this token's wrapping keys.
    attestation: str = "none"

    def describe(self) -> str:
        """A short, secret-free name of the token for messages."""
        if self.token_label:
            return f"token {self.token_label!r}"
        return f"token with serial {self.token_serial!r}"
