"""The signer's one door: everything the controller (and the CLI) may use of ``issuer.signer``.

- :class:`Signer`: ``check``, ``sign`` and the provisioning operations, awaited on the event loop
  (``.blocking(...)`` outside it); the table of operations is ``issuer.signer.operations``. A wrapper
  (the controller's fence) subclasses it and delegates each :class:`Operation` to the signer it wraps.
- :class:`SignerPool`: the signer that runs them in worker processes, built once at start-up.
- The plain data that crosses the wall: key handles, issuer keys, signing requests, what was signed
  (``PEMBundle``), policy; the pure checks the controller makes on what an administrator hands it
  (an imported CA and its chain, a wrapped-key envelope) before the token is touched; and what the
  controller must know of a CA certificate or CSR it keeps in status (``describe_ca``, ``csr_matches``),
  so that ``issuer.controller`` never parses X.509 itself.

Nothing here is a PKCS#11 object; ``lint-imports`` keeps the controller from importing anything else of
the signer.
"""

from __future__ import annotations

from issuer.signer.certificates import (
    BACKDATE,
    CAChain,
    CAInfo,
    PEMBundle,
    SigningRequest,
    canonical_subject,
    csr_matches,
    describe_ca,
)
from issuer.signer.chain import check_imported_ca, check_issuing_chain, check_provided_chain
from issuer.signer.key_wrapping import WrappedKey, check_wrapped_for, parse_wrapped_key
from issuer.signer.keys import (
    Algorithm,
    IssuerKey,
    KeyHandle,
    KeyReport,
    PublicKey,
    WrappingKey,
    public_key_fingerprint,
)
from issuer.signer.operations import BoundOperation, Operation, Signer
from issuer.signer.policy import Policy, tightening_message
from issuer.signer.pool import SignerPool
from issuer.tokens import PinSource, TokenConfig

__all__ = [
    "BACKDATE",
    "Algorithm",
    "BoundOperation",
    "CAChain",
    "CAInfo",
    "IssuerKey",
    "KeyHandle",
    "KeyReport",
    "Operation",
    "PEMBundle",
    "PinSource",
    "Policy",
    "PublicKey",
    "Signer",
    "SignerPool",
    "SigningRequest",
    "TokenConfig",
    "WrappedKey",
    "WrappingKey",
    "canonical_subject",
    "check_imported_ca",
    "check_issuing_chain",
    "check_provided_chain",
    "check_wrapped_for",
    "csr_matches",
    "describe_ca",
    "parse_wrapped_key",
    "public_key_fingerprint",
    "tightening_message",
]
