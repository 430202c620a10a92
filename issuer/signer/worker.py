"""What runs inside a signing worker process: one PKCS#11 context and one session per token.

The task functions here are what the pool sends to a worker. They take and return plain, picklable
data (``TokenConfig``, ``KeyHandle``, PEM bytes, ``SigningRequest``, ``PEMBundle``). A worker serves one
task at a time (:func:`serve`), so its sessions are never shared between threads.

This module is the worker process's whole program (:func:`main`): it imports only what signing needs
(pkcs11, cryptography, the signer) and never the pool, asyncio or anything of the controller, because
every module imported here is resident in every worker.
"""

from __future__ import annotations

import functools
import os
import pickle
import resource
import signal
import struct
import sys
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from cryptography.hazmat.primitives import serialization

from issuer import attestation
from issuer.errors import ConfigurationError, IssuerError, Reason, RetryableError, TrustedIssuerError
from issuer.signer import hsm, token_storage
from issuer.signer.certificates import (
    CAChain,
    PEMBundle,
    SigningRequest,
    build_ca_certificate,
    build_ca_csr,
    check_ca_usable,
    check_csr,
    issue_checked_certificate,
    parse_subject,
)
from issuer.signer.key_wrapping import check_wrapped_for, parse_wrapped_key
from issuer.signer.keys import Algorithm, IssuerKey, KeyHandle, KeyReport, WrappingKey
from issuer.signer.token_capabilities import TokenProbe
from issuer.signer.token_keys import TokenPrivateKey, token_private_key
from issuer.tokens import TokenConfig

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

R = TypeVar("R")
#: Bytes of the task id ahead of each pickled task, outside the pickle: a task a worker cannot unpickle
#: (a function it cannot import) still gets an answer rather than killing the worker.
TASK_ID_BYTES = 8


_sessions: dict[TokenConfig, hsm.TokenSession] = {}


def initialise() -> None:
    """Worker start-up: no core dumps (a dump would hold the session's secrets), and no KeyboardInterrupt
    tracebacks from workers when a person presses Ctrl-C on the CLI: the parent owns shutdown."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    signal.signal(signal.SIGINT, signal.SIG_IGN)


#: Reasons for which a token that cannot be opened may only seem absent: SoftHSM2 shows a token as
#: missing or uninitialised to a process that reads its token.object while another process rewrites it.
_SEEMS_ABSENT = frozenset(
    {Reason.TOKEN_NOT_FOUND, Reason.PIN_NOT_INITIALIZED, Reason.TOKEN_UNAVAILABLE, Reason.TOKEN_ERROR}
)
#: Opening again after a rescan, this many times, a little later each time, before giving up.
OPEN_RETRIES = 2
OPEN_RETRY_DELAY = 0.05


def session(config: TokenConfig) -> hsm.TokenSession:
    """The worker's session on a token, opened (and logged in) on first use.

    A token that seems absent is looked for again after a rescan, twice, before its absence is
    reported; a SoftHSM2 token whose storage directory is gone is reported as ``TokenStorageMissing``
    (naming the directory) rather than ``TokenNotFound``.
    """
    existing = _sessions.get(config)
    if existing is not None:
        quirks = existing.traits.quirks
        if not (quirks.objects_loaded_at_initialize and hsm.objects_changed_elsewhere(config.module)):
            return existing
        forget(config, rescan=True)  # tpm2-pkcs11: load the objects another worker changed
    for attempt in range(OPEN_RETRIES + 1):
        try:
            opened = hsm.TokenSession(config)
        except TrustedIssuerError as err:
            absent = err.reason in _SEEMS_ABSENT
            if absent and attempt < OPEN_RETRIES:
                forget(config, rescan=True)
                time.sleep(OPEN_RETRY_DELAY * (attempt + 1))
                continue
            problem = token_storage.storage_problem(config.module)
            if problem is not None and (absent or isinstance(err, ConfigurationError)):
                message = f"opening {config.describe()}: {problem}"
                raise IssuerError(message, Reason.TOKEN_STORAGE_MISSING) from None
            raise
        _sessions[config] = opened
        return opened
    raise AssertionError("unreachable: the last attempt returns or raises")


def forget(config: TokenConfig, *, rescan: bool) -> None:
    """Drop a token's session so the next task logs in afresh. ``rescan`` also closes every session on
    the same module and finalizes it; the next session initialises it again, so the module reads its
    tokens anew: a token that went away and came back is found again, and so is a key that another
    worker process just created (SoftHSM2's per-process object cache was seen to miss one). A PIN
    problem needs no rescan."""
    stale = _sessions.pop(config, None)
    if stale is not None:
        stale.close()
    if rescan:
        for other in [c for c in _sessions if c.module == config.module]:
            _sessions.pop(other).close()
        _token_keys.clear()
        hsm.reset_module(config.module)


#: Faults after which a task's session is dropped, and those after which the module is rescanned too.
_SESSION_SPOILT = frozenset(
    {Reason.PIN_INCORRECT, Reason.NOT_LOGGED_IN, Reason.TOKEN_NOT_FOUND, Reason.KEY_NOT_FOUND}
)
_RESCAN = frozenset({Reason.TOKEN_NOT_FOUND, Reason.KEY_NOT_FOUND})


def _on_token(config: TokenConfig, run: Callable[[hsm.TokenSession], R]) -> R:
    """Run ``run(session)``; a fault that may have killed the session drops it so the next task
    reopens it (the token came back, the PIN file changed).

    ``KeyNotFound`` is authoritative: before it is raised, ``run`` is tried once more on a session
    opened after a rescan. SoftHSM2's per-process object cache can miss a key that another worker
    process has just created, and a caller that took that miss as "already destroyed" would leave the
    key behind. Every operation finds its keys before it changes anything, so running it again is safe.
    """
    reloads = 0
    attempt = 1
    while attempt <= 2:
        try:
            return run(session(config))
        except hsm.ObjectsChangedElsewhere:
            # Another worker changed the objects while this one was deciding: load them and decide
            # again (each reload sees every change made before it; the workers take turns).
            forget(config, rescan=True)
            reloads += 1
            if reloads > OBJECT_RELOADS:
                raise
            continue
        except RetryableError:
            forget(config, rescan=True)
            raise
        except Exception as err:
            reason = getattr(err, "reason", "")
            if reason == Reason.KEY_NOT_FOUND and attempt == 2:
                raise  # the session that missed it was opened after a rescan: the key is not there
            if reason in _SESSION_SPOILT:
                forget(config, rescan=reason in _RESCAN)
            if reason != Reason.KEY_NOT_FOUND:
                raise
        attempt += 1
    raise AssertionError("unreachable: the second attempt returns or raises")


#: How often one task loads a module again because other workers keep changing its objects.
OBJECT_RELOADS = 20


@functools.lru_cache(maxsize=128)
def _ca_chain(ca_pem: bytes) -> CAChain:
    return CAChain.from_pem(ca_pem)


@functools.lru_cache(maxsize=256)
def unpickled_once(blob: bytes) -> Any:
    """A value the pool sent pickled (``SignerPool.pickled_once``), unpickled once per worker.

    Every later task for the same issuer gets the very same object, so the caches keyed on it and on
    its fields (``ca_pem``, the key handle) hit by identity instead of hashing fresh copies.
    """
    return pickle.loads(blob)  # noqa: S301  # our own parent pickled it, as it pickles every task


def _issuer(issuer: IssuerKey | bytes) -> IssuerKey:
    if isinstance(issuer, IssuerKey):
        return issuer
    value = unpickled_once(issuer)
    if not isinstance(value, IssuerKey):
        raise TypeError(f"expected a pickled IssuerKey, got {type(value).__name__}")
    return value


def _private_key(config: TokenConfig, handle: KeyHandle) -> TokenPrivateKey:
    signing_key = session(config).signing_key(handle)
    cached = _token_keys.get(handle)
    if cached is None or cached[0] is not signing_key:
        cached = (signing_key, token_private_key(signing_key.public_key, signing_key.sign))
        _token_keys[handle] = cached
    return cached[1]


_token_keys: dict[KeyHandle, tuple[hsm.SigningKey, TokenPrivateKey]] = {}


def _unless_missing(run: Callable[[], R], missing: R) -> R:
    """``run()``, or ``missing`` when the token has no such key: for callers to whom that is an answer.
    ``_on_token`` looked again after a rescan before reporting ``KeyNotFound``, so the miss is real."""
    try:
        return run()
    except IssuerError as err:
        if err.reason != Reason.KEY_NOT_FOUND:
            raise
    return missing


# -- tasks: each is one entry of the signer's table (issuer.signer.operations.Signer) ------------------


def sign_request(now: datetime, issuer: IssuerKey | bytes, request: SigningRequest) -> PEMBundle:
    """The whole pipeline for one request: parse and verify the CSR, apply policy, build, sign in token.

    ``issuer`` may be an ``IssuerKey`` or, as the pool sends it, one pickled by ``pickled_once``.
    """
    key_issuer = _issuer(issuer)
    csr = check_csr(request.csr_pem)
    ca = _ca_chain(key_issuer.ca_pem)

    def run(_: hsm.TokenSession) -> PEMBundle:
        key = _private_key(key_issuer.token, key_issuer.key)
        check_ca_usable(ca, key_issuer.key.public_key_sha256, now)
        return issue_checked_certificate(
            csr, request, ca=ca, ca_key=key, policy=key_issuer.policy, now=now, rsa_pss=key_issuer.rsa_pss
        )

    return _on_token(key_issuer.token, run)


def check_issuer(now: datetime, issuer: IssuerKey | bytes) -> datetime:
    """Is the key in the token, is it the recorded key, and does the CA certificate belong to it and
    stand valid now? Returns the issuing CA certificate's not-after, so the caller need not parse it.
    ``issuer`` as for :func:`sign_request`."""
    key_issuer = _issuer(issuer)
    ca = _ca_chain(key_issuer.ca_pem)

    def run(token: hsm.TokenSession) -> None:
        token.signing_key(key_issuer.key, fresh=True)
        check_ca_usable(ca, key_issuer.key.public_key_sha256, now)

    _on_token(key_issuer.token, run)
    return ca.issuer.not_valid_after_utc


def generate_key(config: TokenConfig, algorithm: Algorithm, key_label: str) -> KeyHandle:
    return _on_token(config, lambda s: s.generate_key(algorithm, key_label))


def find_key(config: TokenConfig, key_label: str) -> KeyHandle:
    """The key pair under ``key_label``; ``IssuerError`` (``KeyNotFound``) when there is none."""
    return _on_token(config, lambda s: s.find_by_label(key_label))


def find_key_or_none(config: TokenConfig, key_label: str) -> KeyHandle | None:
    """As :func:`find_key`, where a missing key is an answer (``None``), not a failure."""
    return _unless_missing(lambda: find_key(config, key_label), None)


def verify_key(config: TokenConfig, handle: KeyHandle) -> KeyHandle:
    """Prove the handle's key is in the token and is the recorded key; returns the handle."""
    _on_token(config, lambda s: s.signing_key(handle, fresh=True))
    return handle


def create_self_signed_ca(
    now: datetime,
    config: TokenConfig,
    handle: KeyHandle,
    subject: str,
    duration: timedelta,
    *,
    path_length: int | None = None,
    rsa_pss: bool = False,
) -> bytes:
    """A self-signed CA certificate (PEM) for a token key."""
    name = parse_subject(subject)

    def run(_: hsm.TokenSession) -> bytes:
        key = _private_key(config, handle)
        cert = build_ca_certificate(
            key, name, duration=duration, now=now, path_length=path_length, rsa_pss=rsa_pss
        )
        return cert.public_bytes(serialization.Encoding.PEM)

    return _on_token(config, run)


def create_ca_csr(
    config: TokenConfig,
    handle: KeyHandle,
    subject: str,
    *,
    path_length: int | None,
    rsa_pss: bool,
) -> str:
    """A CA CSR (PEM) for a token key, signed in the token."""
    name = parse_subject(subject)

    def run(_: hsm.TokenSession) -> str:
        key = _private_key(config, handle)
        csr = build_ca_csr(key, name, path_length=path_length, rsa_pss=rsa_pss)
        return csr.public_bytes(serialization.Encoding.PEM).decode()

    return _on_token(config, run)


def _wrapping_key(config: TokenConfig, found: tuple[KeyHandle, bytes, tuple[str, ...]]) -> WrappingKey:
    handle, spki, parameters = found
    public_pem = serialization.load_der_public_key(spki).public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    # The provider runs here, next to the token: an enclave's quote must come from inside the enclave.
    evidence = attestation.provider(config.attestation).evidence(spki, handle.public_key_sha256)
    return WrappingKey(
        handle=handle,
        public_pem=public_pem.decode(),
        sha256=handle.public_key_sha256,
        parameters=parameters,
        evidence=evidence,
    )


def generate_wrapping_key(config: TokenConfig, key_label: str) -> WrappingKey:
    attestation.check_provider_name(config.attestation)  # before a key is made that nobody can vouch for
    return _wrapping_key(config, _on_token(config, lambda s: s.generate_wrapping_key(key_label)))


def find_wrapping_key(config: TokenConfig, key_label: str) -> WrappingKey:
    """The wrapping key under ``key_label``; ``IssuerError`` (``KeyNotFound``) if absent."""
    return _wrapping_key(config, _on_token(config, lambda s: s.find_wrapping_key(key_label)))


def find_wrapping_key_or_none(config: TokenConfig, key_label: str) -> WrappingKey | None:
    """As :func:`find_wrapping_key`, where a missing key is an answer (``None``)."""
    return _unless_missing(lambda: find_wrapping_key(config, key_label), None)


def unwrap_key(config: TokenConfig, wrapping: KeyHandle, wrapped: bytes, key_label: str) -> KeyHandle:
    """Import a ``provision wrap`` envelope; a malformed or foreign envelope is refused before the token
    is touched."""
    envelope = parse_wrapped_key(wrapped)
    check_wrapped_for(envelope, wrapping.public_key_sha256)
    return _on_token(config, lambda s: s.unwrap_key(wrapping, envelope, key_label))


def destroy_wrapping_key(config: TokenConfig, wrapping: KeyHandle) -> None:
    """Destroy a wrapping key (both halves), after its import or when an import is abandoned."""
    _on_token(config, lambda s: s.destroy_wrapping_key(wrapping))


def destroy_wrapping_key_if_present(config: TokenConfig, wrapping: KeyHandle) -> bool:
    """As :func:`destroy_wrapping_key`; ``False`` when it was already gone."""

    def run() -> bool:
        destroy_wrapping_key(config, wrapping)
        return True

    return _unless_missing(run, False)


def list_keys(config: TokenConfig) -> list[KeyReport]:
    return _on_token(config, lambda s: s.list_keys())


def destroy_key(config: TokenConfig, handle: KeyHandle) -> None:
    """Destroy a CA key pair; ``IssuerError`` (``KeyNotFound``) when it is not in the token."""
    _on_token(config, lambda s: s.destroy_key(handle))
    _token_keys.pop(handle, None)


def destroy_key_if_present(config: TokenConfig, handle: KeyHandle) -> bool:
    """As :func:`destroy_key`; ``False`` when the key was already gone."""

    def run() -> bool:
        destroy_key(config, handle)
        return True

    return _unless_missing(run, False)


def probe_token(config: TokenConfig, seconds: float = 0.5) -> TokenProbe:
    """What the token can do for us (``hsm probe``): its info, our algorithms and their signing
    mechanisms, unwrap, and a signing rate over ``seconds`` per algorithm (0: no rate, no key made)."""
    return _on_token(config, lambda s: s.probe(seconds))


def private_key_attribute(config: TokenConfig, handle: KeyHandle, attribute: str) -> object:
    return _on_token(config, lambda s: s.private_key_attribute(handle, attribute))


def try_wrap_out(config: TokenConfig, handle: KeyHandle) -> None:
    _on_token(config, lambda s: s.try_wrap_out(handle))


def ping() -> bool:
    """A no-op task: proves a worker process is up (used to warm the pool)."""
    return True


# -- the worker process ------------------------------------------------------------------------------


def serve(conn: Connection | PipeEnd) -> None:
    """A worker process's main loop: run each task read from ``conn`` and write back its outcome.

    Messages in: a :data:`TASK_ID_BYTES`-byte task id then the pickled ``(fn, args)``, or no bytes at
    all to exit. Out: ``(task_id, True, result)`` or ``(task_id, False, exception)``. One task at a
    time, so PKCS#11 is only ever used by one thread.
    """
    initialise()
    while True:
        try:
            message = conn.recv_bytes()
        except (EOFError, ConnectionResetError):
            return  # the parent is gone (a Connection, under forkserver, reports a reset as such)
        if not message:
            return
        task_id = int.from_bytes(message[:TASK_ID_BYTES])
        try:
            fn, args = pickle.loads(memoryview(message)[TASK_ID_BYTES:])  # noqa: S301  # from our parent
            reply = (task_id, True, fn(*args))
        except BaseException as err:  # the caller's future carries it, as ProcessPoolExecutor would
            reply = (task_id, False, err)
        try:
            conn.send(reply)
        except OSError:
            return  # the parent is gone (it exited without closing the pool)
        except Exception as err:  # an unpicklable result or exception must not kill the worker
            conn.send((task_id, False, TypeError(f"the task's outcome cannot be sent back: {err!r}")))


class PipeEnd:
    """A worker's end of the pool's pipe (a ``multiprocessing.connection.Connection`` in the parent),
    framed as that class frames messages: a big-endian signed 32-bit length, or -1 and a 64-bit length.

    Not ``Connection`` itself because importing ``multiprocessing.connection`` brings tempfile, shutil,
    bz2, lzma and subprocess into every worker (1 MiB resident each) for nothing a worker uses.
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def recv_bytes(self) -> bytes:
        (size,) = struct.unpack("!i", self._read(4))
        if size == -1:
            (size,) = struct.unpack("!Q", self._read(8))
        return self._read(size)

    def recv(self) -> Any:
        return pickle.loads(self.recv_bytes())  # noqa: S301  # from our parent

    def send(self, value: object) -> None:
        data = pickle.dumps(value, pickle.HIGHEST_PROTOCOL)
        size = len(data)
        header = struct.pack("!i", size) if size <= 0x7FFFFFFF else struct.pack("!iQ", -1, size)
        self._write(header + data)

    def _read(self, size: int) -> bytes:
        chunks: list[bytes] = []
        while size:
            try:
                chunk = os.read(self._fd, size)
            except ConnectionResetError:
                # A parent that died with our reply unread resets the socket instead of closing it: it is
                # gone all the same, and its death is not this worker's error to report.
                raise EOFError from None
            if not chunk:
                raise EOFError
            chunks.append(chunk)
            size -= len(chunk)
        return b"".join(chunks)

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]


def main() -> None:
    """The program of a worker the pool started as a fresh interpreter (``python -c``): ``sys.argv[1]``
    is the file descriptor of its end of the pool's pipe. The parent's ``sys.path`` comes first on the
    pipe, so tasks defined in modules the parent found (tests, benchmarks) import here too."""
    conn = PipeEnd(int(sys.argv[1]))
    sys.path[:] = conn.recv()
    serve(conn)
