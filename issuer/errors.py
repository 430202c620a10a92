"""The one error vocabulary of trusted-issuer, modelled on cert-manager issuer-lib's error kinds.

Every failure that crosses a module boundary is one of these classes, so callers decide what to do
from the class alone:

- ``PendingError``: not a failure yet (issuer not ready, request not approved); retry, no limit.
- ``PermanentError``: only a new request can fix it (malformed CSR, policy violation).
- ``IssuerError``: the issuer itself is broken (wrong PIN, key missing); its requests wait.
- ``RetryableError`` (and any other exception): retried with backoff until the request's deadline.

Messages are written for a person and must never carry a PIN, key bytes or a whole CSR. Every class
pickles with its message and reason intact, because workers raise them across process boundaries.
"""

from __future__ import annotations

import enum


class Reason(enum.StrEnum):
    """The reasons the signer gives for a failure, as they cross the wall to the controller.

    Each value is the CamelCase word that appears in conditions, Events and logs, so a member compares
    equal to it; callers compare members, never string literals. ``hsm.classify`` maps every PKCS#11
    fault to one of these, once.
    """

    # The PIN: the issuer waits until its source changes (a rejected PIN is never retried).
    PIN_INCORRECT = "PINIncorrect"
    PIN_LOCKED = "PINLocked"
    PIN_EXPIRED = "PINExpired"
    PIN_INVALID = "PINInvalid"
    PIN_NOT_INITIALIZED = "PINNotInitialized"
    NOT_LOGGED_IN = "NotLoggedIn"
    # The token.
    TOKEN_NOT_FOUND = "TokenNotFound"
    TOKEN_AMBIGUOUS = "TokenAmbiguous"
    TOKEN_STORAGE_MISSING = "TokenStorageMissing"
    TOKEN_REFUSED = "TokenRefused"
    TOKEN_READ_ONLY = "TokenReadOnly"
    TOKEN_UNAVAILABLE = "TokenUnavailable"  # passing: the token is unreachable for now
    TOKEN_ERROR = "TokenError"  # passing: any other PKCS#11 fault
    MECHANISM_NOT_SUPPORTED = "MechanismNotSupported"
    # A key.
    KEY_NOT_FOUND = "KeyNotFound"
    KEY_AMBIGUOUS = "KeyAmbiguous"
    KEY_INVALID = "KeyInvalid"
    KEY_MISMATCH = "KeyMismatch"
    KEY_HANDLE_INVALID = "KeyHandleInvalid"
    #: The token made a key weaker than its template asked (extractable, not sensitive...): destroyed.
    KEY_PROTECTION_REFUSED = "KeyProtectionRefused"
    # The pool.
    WORKER_DIED = "WorkerDied"  # passing: the pool has replaced the worker; retry


#: A PIN the token refused: retrying with the same PIN cannot help and could lock the token.
PIN_REJECTED = frozenset({Reason.PIN_INCORRECT, Reason.PIN_LOCKED, Reason.PIN_EXPIRED})


class TrustedIssuerError(Exception):
    """Base class: ``message`` is safe to log and to show in a status or an Event."""

    #: A short CamelCase reason for conditions and Events.
    default_reason = "Error"

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason or self.default_reason

    def __reduce__(self) -> tuple[type[TrustedIssuerError], tuple[str, str]]:
        return (type(self), (self.message, self.reason))

    def __str__(self) -> str:
        return self.message


class PendingError(TrustedIssuerError):
    """Nothing is wrong yet: wait for something outside us and try again, with no retry limit."""

    default_reason = "Pending"


class PermanentError(TrustedIssuerError):
    """The request itself is wrong; retrying the same request can never succeed."""

    default_reason = "Failed"


class IssuerError(TrustedIssuerError):
    """The issuer (its token, PIN, key or CA) is broken; requests wait until it recovers."""

    default_reason = "IssuerError"


class RetryableError(TrustedIssuerError):
    """A passing fault (session lost, device busy, worker died): retry with backoff."""

    default_reason = "Retrying"


class ConfigurationError(TrustedIssuerError):
    """Operator or CLI configuration that cannot work (missing module, unreadable PIN file)."""

    default_reason = "ConfigurationError"
