"""Tasks the signer benchmark sends into the signing worker processes, next to ``worker.sign_request``.

Top-level functions, so a spawned worker can unpickle them by name:

- :func:`raw_token_sign` is the ceiling: a bare python-pkcs11 sign loop on the worker's token, with the
  mechanism and input size that the pipeline's token signature uses, and nothing else.
- :func:`software_sign_request` is the peer: the same pipeline as ``worker.sign_request`` (parse and
  verify the CSR, check the CA, policy, build, sign) with a software CA key in ``cryptography``, and
  its issuer shipped the same way (pickled once by ``SignerPool.pickled_once``, unpickled once per
  worker by ``worker.unpickled_once``).
"""

from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pkcs11
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pkcs11 import Mechanism, ObjectClass

from issuer.signer import worker
from issuer.signer.certificates import (
    CAChain,
    CAPrivateKey,
    PEMBundle,
    SigningRequest,
    check_ca_usable,
    check_csr,
    issue_checked_certificate,
)
from issuer.signer.keys import KeyHandle
from issuer.signer.policy import Policy
from issuer.tokens import TokenConfig

#: About the size of a leaf certificate's TBSCertificate, which is what the pipeline signs.
TBS_BYTES = 480


@dataclass(frozen=True)
class SoftwareIssuer:
    """The software peer's counterpart of ``IssuerKey``: a PEM CA key instead of a token key handle."""

    key_pem: bytes
    key_sha256: str
    ca_pem: bytes
    policy: Policy
    rsa_pss: bool = False


# -- the ceiling: raw token signatures ------------------------------------------------------------------

_raw_keys: dict[tuple[TokenConfig, KeyHandle], tuple[Any, Any]] = {}


def _raw_key(config: TokenConfig, handle: KeyHandle) -> Any:
    """The private key object on a python-pkcs11 session of this benchmark's own.

    The worker's pipeline session is opened first: it logs the process in (PKCS#11 login state belongs
    to the process, not the session), so this session needs no PIN and the pipeline's own login never
    meets an already-logged-in token, whichever variant runs first.
    """
    cached = _raw_keys.get((config, handle))
    if cached is not None:
        return cached[1]
    worker.session(config)
    lib = pkcs11.lib(config.module)
    if config.token_serial:
        token = lib.get_token(token_serial=config.token_serial.encode())
    else:
        token = lib.get_token(token_label=config.token_label)
    session = token.open()
    key = session.get_key(
        object_class=ObjectClass.PRIVATE_KEY, id=bytes.fromhex(handle.key_id), label=handle.key_label
    )
    _raw_keys[(config, handle)] = (session, key)
    return key


def raw_token_sign(config: TokenConfig, handle: KeyHandle, count: int) -> int:
    """Sign ``count`` TBS-sized messages in the token the way the pipeline does; returns ``count``.

    ECDSA: SHA-256 in Python, then CKM_ECDSA on the digest (SoftHSM2 2.6.1 has no CKM_ECDSA_SHA256);
    RSA: CKM_SHA256_RSA_PKCS on the whole message.
    """
    key = _raw_key(config, handle)
    message = os.urandom(TBS_BYTES)
    if handle.algorithm.family == "ec":
        for _ in range(count):
            key.sign(hashlib.sha256(message).digest(), mechanism=Mechanism.ECDSA)
    elif handle.algorithm.family == "rsa":
        for _ in range(count):
            key.sign(message, mechanism=Mechanism.SHA256_RSA_PKCS)
    else:
        raise ValueError(f"no raw sign loop for {handle.algorithm.value}")
    return count


# -- the peer: the pipeline with a software key ---------------------------------------------------------


@functools.lru_cache(maxsize=16)
def _software_key(key_pem: bytes) -> CAPrivateKey:
    key = serialization.load_pem_private_key(key_pem, password=None)
    assert isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey)
    return key


@functools.lru_cache(maxsize=16)
def _ca_chain(ca_pem: bytes) -> CAChain:
    return CAChain.from_pem(ca_pem)


def software_sign_request(
    issuer: SoftwareIssuer | bytes, request: SigningRequest, now: datetime
) -> PEMBundle:
    """``worker.sign_request`` step for step, with the CA key in memory instead of in the token."""
    software = worker.unpickled_once(issuer) if isinstance(issuer, bytes) else issuer
    assert isinstance(software, SoftwareIssuer)
    csr = check_csr(request.csr_pem)
    ca = _ca_chain(software.ca_pem)
    key = _software_key(software.key_pem)
    check_ca_usable(ca, software.key_sha256, now)
    return issue_checked_certificate(
        csr, request, ca=ca, ca_key=key, policy=software.policy, now=now, rsa_pss=software.rsa_pss
    )


# -- process facts --------------------------------------------------------------------------------------


def worker_pid() -> int:
    """The worker's process id (the benchmark reads its CPU time and peak RSS from /proc)."""
    return os.getpid()
