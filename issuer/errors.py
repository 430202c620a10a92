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
