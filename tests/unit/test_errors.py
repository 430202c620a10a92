"""The error vocabulary survives pickling, because signing workers raise it across processes."""

from __future__ import annotations

import multiprocessing
import pickle
from concurrent.futures import ProcessPoolExecutor

import pytest

from issuer import errors
from issuer.errors import (
    ConfigurationError,
    IssuerError,
    PendingError,
    PermanentError,
    RetryableError,
    TrustedIssuerError,
)

#: Every class of the vocabulary and the reason it reports when given none.
DEFAULT_REASONS: dict[type[TrustedIssuerError], str] = {
    TrustedIssuerError: "Error",
    PendingError: "Pending",
    PermanentError: "Failed",
    IssuerError: "IssuerError",
    RetryableError: "Retrying",
    ConfigurationError: "ConfigurationError",
}
ERROR_CLASSES = [pytest.param(cls, reason, id=cls.__name__) for cls, reason in DEFAULT_REASONS.items()]


def _round_trip(error: TrustedIssuerError, protocol: int = pickle.HIGHEST_PROTOCOL) -> TrustedIssuerError:
    # The bytes were pickled just above, by this test: nothing untrusted is loaded.
    copy: TrustedIssuerError = pickle.loads(pickle.dumps(error, protocol=protocol))  # noqa: S301
    return copy


def test_every_error_class_is_listed() -> None:
    defined = {
        value
        for value in vars(errors).values()
        if isinstance(value, type) and issubclass(value, TrustedIssuerError)
    }
    assert defined == set(DEFAULT_REASONS)


@pytest.mark.parametrize(("cls", "default_reason"), ERROR_CLASSES)
@pytest.mark.parametrize(
    "protocol", [pytest.param(p, id=f"pickle-{p}") for p in (2, pickle.HIGHEST_PROTOCOL)]
)
def test_pickles_with_default_reason(
    cls: type[TrustedIssuerError], default_reason: str, protocol: int
) -> None:
    error = cls("token 'ca' has no key 'mesh-root'")
    copy = _round_trip(error, protocol)
    assert type(copy) is cls
    assert copy.message == "token 'ca' has no key 'mesh-root'"
    assert copy.reason == default_reason
    assert str(copy) == "token 'ca' has no key 'mesh-root'"
    assert copy.args == error.args


@pytest.mark.parametrize(("cls", "default_reason"), ERROR_CLASSES)
def test_pickles_with_explicit_reason(cls: type[TrustedIssuerError], default_reason: str) -> None:
    copy = _round_trip(cls("CA certificate expired", "CAExpired"))
    assert (type(copy), copy.message, copy.reason) == (cls, "CA certificate expired", "CAExpired")
    assert copy.reason != default_reason


def _raise(cls: type[TrustedIssuerError], message: str, reason: str | None) -> None:
    raise cls(message, reason)


def test_errors_cross_a_process_boundary() -> None:
    """Raised in a spawned worker, each error arrives in the parent as the same class, message and reason."""
    cases: list[tuple[type[TrustedIssuerError], str, str | None]] = [
        (cls, f"message of {cls.__name__}", f"Reason{index}") for index, cls in enumerate(DEFAULT_REASONS)
    ]
    cases.append((PermanentError, "CSR has an RSA-1024 key", None))
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(_raise, cls, message, reason) for cls, message, reason in cases]
        arrived = [future.exception() for future in futures]
    for (cls, message, reason), error in zip(cases, arrived, strict=True):
        assert type(error) is cls
        assert isinstance(error, TrustedIssuerError)  # narrows for the line below
        assert (error.message, error.reason) == (message, reason or cls.default_reason)
