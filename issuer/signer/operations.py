"""The signer's operations, in one table: each entry is one task that runs in a signing worker.

:class:`Signer` is what the controller holds. Every public operation is an entry below, made from the
worker task that does the work; nothing else needs writing to add one. An entry is offered two ways,
from the same table:

- ``await signer.sign(issuer, request)``: the operator's form; the event loop only awaits.
- ``signer.sign.blocking(issuer, request)``: for the CLI, benchmarks and tests.

A concrete signer decides only how a task runs (:meth:`Signer.dispatch`): the pool
(``issuer.signer.pool.SignerPool``) sends it to a worker process; a wrapper (the controller's fence)
checks something and delegates.
Every operation may raise ``RetryableError`` with reason ``WorkerDied``; retrying is then safe.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar, overload

from issuer.signer import worker

P = ParamSpec("P")
R = TypeVar("R")


class Operation(Generic[P, R]):
    """One entry of the table: a worker task (a top-level function, so it pickles by name).

    ``clocked`` tasks take the signer's clock reading as their first argument, supplied by the signer:
    the clock is injected once, into the signer, never read inside a worker.
    """

    def __init__(self, task: Callable[..., R], *, clocked: bool) -> None:
        self.task = task
        self.clocked = clocked
        self.name = task.__name__

    def __set_name__(self, owner: type[Any], name: str) -> None:
        self.name = name

    @overload
    def __get__(self, instance: None, owner: type[Any]) -> Operation[P, R]: ...

    @overload
    def __get__(self, instance: Signer, owner: type[Any]) -> BoundOperation[P, R]: ...

    def __get__(self, instance: Signer | None, owner: type[Any]) -> Operation[P, R] | BoundOperation[P, R]:
        if instance is None:
            return self
        bound = BoundOperation(instance, self)
        instance.__dict__[self.name] = bound  # later look-ups find it without this call
        return bound


class BoundOperation(Generic[P, R]):
    """An operation of one signer: call it for an awaitable, or ``.blocking(...)`` to wait in this thread."""

    __slots__ = ("operation", "signer")

    def __init__(self, signer: Signer, operation: Operation[P, R]) -> None:
        self.signer = signer
        self.operation = operation

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> asyncio.Future[R]:
        """Start the operation now; the result is awaited on the running event loop."""
        return asyncio.wrap_future(self.signer.dispatch(self.operation, args, kwargs))

    def blocking(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run the operation and wait for it, blocking this thread (never the event loop's)."""
        return self.signer.dispatch(self.operation, args, kwargs).result()


def operation(task: Callable[P, R]) -> Operation[P, R]:
    """An entry whose callers give every argument of ``task``."""
    return Operation(task, clocked=False)


def clocked(task: Callable[Concatenate[datetime, P], R]) -> Operation[P, R]:
    """An entry whose ``task`` takes the signer's ``now`` first; callers give the rest."""
    return Operation(task, clocked=True)


class Signer:
    """The signer as the controller sees it: named operations on plain data (``IssuerKey``,
    ``TokenConfig``, ``KeyHandle``, PEM), never a PKCS#11 object.

    Where "missing" is an answer rather than a failure, ask the ``_or_none`` / ``_if_present`` form;
    the others raise ``IssuerError`` with reason ``KeyNotFound``.
    """

    # -- every request, and the issuer's readiness --
    #: ``(issuer, request) -> PEMBundle``: the whole pipeline for one request, the signature in the token.
    sign = clocked(worker.sign_request)
    #: ``(issuer) -> datetime``: the key is there and is the recorded one; the CA is its and valid now.
    #: Returns the issuing CA certificate's not-after.
    check = clocked(worker.check_issuer)

    # -- an issuer's CA key --
    generate_key = operation(worker.generate_key)
    find_key = operation(worker.find_key)
    find_key_or_none = operation(worker.find_key_or_none)
    #: ``(token, key) -> key``: the key is in the token and is the recorded one, looked up afresh.
    verify_key = operation(worker.verify_key)
    destroy_key = operation(worker.destroy_key)
    destroy_key_if_present = operation(worker.destroy_key_if_present)
    list_keys = operation(worker.list_keys)
    #: ``(token, seconds) -> TokenProbe``: what the token can do for us (``hsm probe``); leaves nothing.
    probe_token = operation(worker.probe_token)

    # -- its CA certificate: self-signed, or a CSR for an external CA to make it an intermediate --
    create_self_signed_ca = clocked(worker.create_self_signed_ca)
    create_ca_csr = operation(worker.create_ca_csr)

    # -- importing a CA key wrapped offline (docs/provisioning.md) --
    generate_wrapping_key = operation(worker.generate_wrapping_key)
    find_wrapping_key = operation(worker.find_wrapping_key)
    find_wrapping_key_or_none = operation(worker.find_wrapping_key_or_none)
    #: Raises ``IssuerError`` (``WrappedForAnotherKey``, ``WrappedKeyInvalid``, ``UnsupportedKeyType``,
    #: ``WrapParameterNotSupported``), each naming what to do.
    unwrap_key = operation(worker.unwrap_key)
    destroy_wrapping_key = operation(worker.destroy_wrapping_key)
    destroy_wrapping_key_if_present = operation(worker.destroy_wrapping_key_if_present)

    def dispatch(
        self, operation: Operation[Any, R], args: tuple[Any, ...], kwargs: Mapping[str, Any]
    ) -> concurrent.futures.Future[R]:
        """Start ``operation`` with the caller's arguments; how is the concrete signer's business."""
        raise NotImplementedError

    def close(self) -> None:
        """Stop the signer (idempotent); afterwards every operation raises ``RuntimeError``."""
        raise NotImplementedError
