"""Provisioned CA keys (issue 8), controller side: a wrapped import of an existing CA key, and an
intermediate CA certified by an external (offline) root.

Both wait for an administrator: the operator publishes what they need in status (the wrapping public key,
or a CA CSR), reports Ready=False with a reason that says what to do, and looks for the answer in a
Secret it reads with ``get`` only. Every defect of the answer ends Ready=False with a reason naming it;
nothing here ever writes key material to status or logs (the wrapped blob is ciphertext, and is not
logged either).

Secret layout (docs/provisioning.md): ``wrapped-key.bin`` (import only), ``tls.crt`` (the CA certificate,
then its intermediates) and ``ca.crt`` (the root; may be omitted for a self-signed imported root).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from issuer import api
from issuer.clock import rfc3339
from issuer.controller import conditions as st
from issuer.controller.issuers.key_budget import KeyBudget
from issuer.controller.issuers.key_scope import KeyScope, wrapping_key_label
from issuer.controller.issuers.rotation import USE_SIGNING, Log, Outcome
from issuer.controller.issuers.spec import IssuerSpec
from issuer.controller.issuers.status import IssuerStatus, StatusPatch
from issuer.controller.kubeapi import NotFound, own_namespace
from issuer.controller.runtime import Runtime
from issuer.errors import IssuerError, PendingError
from issuer.signer.api import (
    CAChain,
    KeyHandle,
    WrappingKey,
    check_imported_ca,
    check_provided_chain,
    check_wrapped_for,
    csr_matches,
    parse_wrapped_key,
)
from issuer.tokens import TokenConfig

WRAPPED_KEY = "wrapped-key.bin"
CERTIFICATE = "tls.crt"
ROOT = "ca.crt"


@dataclass(frozen=True)
class Place:
    """Who is being provisioned: the issuer's kind and name, its key label, and its Secret's namespace."""

    kind: str
    name: str
    namespace: str | None
    key_label: str
    secret_namespace: str

    def secret(self, name: str) -> str:
        return f"{self.secret_namespace}/{name}"

    def kubectl(self) -> str:
        resource = "trustedissuer" if self.kind == api.ISSUER_KIND else "trustedclusterissuer"
        scope = f" -n {self.namespace}" if self.namespace else ""
        return f"kubectl get {resource} {self.name}{scope}"


def secret_namespace(kind: str, namespace: str | None, configured: str | None) -> str:
    """A TrustedIssuer's Secrets live in its namespace; a TrustedClusterIssuer's in the operator's cluster
    resource namespace (``TRUSTED_ISSUER_CLUSTER_RESOURCE_NAMESPACE``, else the pod's own namespace)."""
    if kind == api.ISSUER_KIND and namespace:
        return namespace
    if configured:
        return configured
    own = own_namespace()
    if own:
        return own
    raise IssuerError(
        f"a {kind} reads its Secrets from the operator's cluster resource namespace, which is unknown "
        f"here: set {api.ENV_PREFIX}CLUSTER_RESOURCE_NAMESPACE",
        api.REASON_CLUSTER_RESOURCE_NAMESPACE_UNKNOWN,
    )


def check_secret_chain(
    data: Mapping[str, bytes], key_fingerprint: str, now: Any, *, path_length: int | None, where: str
) -> CAChain:
    """The CA chain an administrator put into a Secret, checked against the token key: the certificate
    must be the key's, a CA, valid now, and verify up to the root (``ca.crt``, or itself if self-signed).
    Errors keep the checker's reason and name the Secret."""
    certificate = data.get(CERTIFICATE)
    if not certificate:
        raise IssuerError(
            f"Secret {where} has no {CERTIFICATE} (the CA certificate)", api.REASON_SECRET_INCOMPLETE
        )
    try:
        return check_provided_chain(
            certificate, data.get(ROOT), key_fingerprint, now, path_length=path_length
        )
    except IssuerError as err:
        raise IssuerError(f"Secret {where}: {err.message}", err.reason) from None


def _recorded_chain(status: IssuerStatus, key_fingerprint: str, now: Any) -> CAChain | None:
    """The chain recorded in status, if it is still good for the key (the Secret may be gone)."""
    pem = status.ca_chain
    if not pem:
        return None
    try:
        return check_imported_ca(str(pem).encode(), key_fingerprint, now)
    except IssuerError:
        return None


async def _read_secret(runtime: Runtime, place: Place, name: str) -> dict[str, bytes] | None:
    try:
        return await runtime.client.get_secret(place.secret_namespace, name)
    except NotFound:
        return None


def _publish_chain(chain: CAChain, handle: KeyHandle, patch: StatusPatch) -> Outcome:
    patch.signing_key(handle)
    patch.ca_chain(chain.pem.decode("ascii"))
    patch.trust(
        [{**st.ca_entry(chain.issuer_pem), "publicKeySHA256": handle.public_key_sha256, "use": USE_SIGNING}],
        chain.root_pem.decode("ascii"),
    )
    return Outcome(handle, chain.pem, chain.root_pem)


def _newer(first: CAChain | None, second: CAChain | None) -> CAChain | None:
    if first is None or second is None:
        return first or second
    return first if first.not_after >= second.not_after else second


# -- wrapped import --------------------------------------------------------------------------------------


async def imported(
    runtime: Runtime,
    token: TokenConfig,
    spec: IssuerSpec,
    place: Place,
    scope: KeyScope,
    budget: KeyBudget,
    status: IssuerStatus,
    patch: StatusPatch,
    log: Log,
) -> Outcome:
    """Import the issuer's CA key from its wrapped form, or say what the administrator must do next.
    Handles read from ``status`` are used only if ``scope`` says they are this issuer's."""
    assert spec.import_secret is not None
    where = place.secret(spec.import_secret)
    now = runtime.clock()
    handle = await _imported_key(runtime, token, place, scope, status)
    if handle is None:
        return await _import(runtime, token, spec, place, budget, status, patch, log)

    # Imported already (perhaps by a run that died before recording it): tidy up, then use the chain.
    if status.wrapping_key:
        wrapping = scope.wrapping_key(status.wrapping_key, "wrappingKey")
        await runtime.pool.destroy_wrapping_key_if_present(token, wrapping.handle)
        patch.wrapping_key(None)
    data = await _read_secret(runtime, place, spec.import_secret)
    from_secret: CAChain | None = None
    refused = ""
    if data is not None and data.get(CERTIFICATE):
        try:
            from_secret = check_secret_chain(
                data, handle.public_key_sha256, now, path_length=None, where=where
            )
        except IssuerError as err:
            refused = err.message
    chain = _newer(from_secret, _recorded_chain(status, handle.public_key_sha256, now))
    if chain is None:
        raise IssuerError(
            refused
            or f"the key is imported but no valid CA certificate for it is known: put it into Secret {where} "
            f"({CERTIFICATE}, and {ROOT} for a chain)",
            api.REASON_CA_CERTIFICATE_MISSING,
        )
    outcome = _publish_chain(chain, handle, patch)
    note = f"; key imported: Secret {where} can now be deleted"
    if refused:
        note += f"; the certificate in it was refused: {refused}"
    return Outcome(outcome.handle, outcome.ca_pem, outcome.trust_pem, note)


async def _imported_key(
    runtime: Runtime, token: TokenConfig, place: Place, scope: KeyScope, status: IssuerStatus
) -> KeyHandle | None:
    recorded = status.key_handle
    if recorded:
        return await runtime.pool.verify_key(token, scope.signing_key(recorded, "keyHandle")[0])
    return await runtime.pool.find_key_or_none(token, place.key_label)


async def _wrapping_key(
    runtime: Runtime, token: TokenConfig, place: Place, budget: KeyBudget, status: IssuerStatus, log: Log
) -> WrappingKey:
    """The wrapping key to advertise: looked up afresh in the token every time (one that vanished must
    not stay advertised), found by label after a crash, or made."""
    label = wrapping_key_label(place.key_label)
    found = await runtime.pool.find_wrapping_key_or_none(token, label)
    if found is not None:
        return found
    if status.wrapping_key:
        # Nothing was imported with it yet, so a new one costs only a new wrap; a blob made for the old
        # one is refused by name (WrappedForAnotherKey).
        log.warning(f"the advertised wrapping key {label!r} is gone from the token: publishing a new one")
    async with budget.room(f"the wrapping key {label!r}"):
        return await runtime.pool.generate_wrapping_key(token, label)


async def _import(
    runtime: Runtime,
    token: TokenConfig,
    spec: IssuerSpec,
    place: Place,
    budget: KeyBudget,
    status: IssuerStatus,
    patch: StatusPatch,
    log: Log,
) -> Outcome:
    assert spec.import_secret is not None
    where = place.secret(spec.import_secret)
    wrapping = await _wrapping_key(runtime, token, place, budget, status, log)
    patch.wrapping_key(wrapping)
    data = await _read_secret(runtime, place, spec.import_secret)
    if data is None:
        raise PendingError(
            f"waiting for the wrapped CA key: save status.wrappingKey.publicKeyPEM of `{place.kubectl()}` "
            "as wk.pem; take the wrapping key's SHA-256 through a second channel, never from this status "
            "(whoever can write status can swap the key and its fingerprint): on the token's node, "
            "`trusted-issuer hsm keys` lists it as the PUBLIC-KEY-SHA256 of label "
            f"{wrapping.handle.key_label!r}; "
            "run `trusted-issuer provision wrap --wrapping-key wk.pem --key ca.key --expect-sha256 <that "
            f"SHA-256> --out {WRAPPED_KEY}` (it refuses any other key), then `kubectl create secret generic "
            f"{spec.import_secret} -n {place.secret_namespace} --from-file={WRAPPED_KEY} "
            f"--from-file={CERTIFICATE} [--from-file={ROOT}]`",
            api.REASON_AWAITING_WRAPPED_KEY,
        )
    missing = [k for k in (WRAPPED_KEY, CERTIFICATE) if not data.get(k)]
    if missing:
        raise IssuerError(f"Secret {where} lacks {' and '.join(missing)}", api.REASON_SECRET_INCOMPLETE)
    blob = data[WRAPPED_KEY]
    # Checked before the token is touched: a blob for another wrapping key, or a certificate that is not
    # the wrapped key's, is named without unwrapping anything.
    try:
        envelope = parse_wrapped_key(blob)
        check_wrapped_for(envelope, wrapping.sha256, wrapping.parameters)
    except IssuerError as err:
        raise IssuerError(f"Secret {where}: {err.message}", err.reason) from None
    now = runtime.clock()
    check_secret_chain(data, envelope.public_key_sha256, now, path_length=None, where=where)
    handle = await runtime.pool.unwrap_key(token, wrapping.handle, blob, place.key_label)
    try:
        # The envelope's public key is a claim; the unwrapped key in the token is the fact.
        chain = check_secret_chain(data, handle.public_key_sha256, now, path_length=None, where=where)
    except IssuerError:
        await runtime.pool.destroy_key(token, handle)
        raise
    await runtime.pool.destroy_wrapping_key_if_present(token, wrapping.handle)
    patch.wrapping_key(None)
    patch.key_import(
        spec.import_secret,
        now,
        f"the key is in the token and the wrapping key is destroyed: Secret {where} can now be deleted",
    )
    log.info(
        f"imported {handle.algorithm.value} CA key label={handle.key_label!r} id={handle.key_id} "
        f"from Secret {where}; wrapping key destroyed"
    )
    outcome = _publish_chain(chain, handle, patch)
    return Outcome(
        handle, outcome.ca_pem, outcome.trust_pem, f"; key imported: Secret {where} can now be deleted"
    )


# -- intermediate CA -------------------------------------------------------------------------------------


async def intermediate(
    runtime: Runtime,
    token: TokenConfig,
    spec: IssuerSpec,
    place: Place,
    handle: KeyHandle,
    status: IssuerStatus,
    patch: StatusPatch,
) -> Outcome:
    """Use the certificate an external CA gave the token key, or publish a CSR and wait for one; publish
    a renewal CSR (same key) when the certificate is within renewBefore of expiry."""
    assert spec.ca_secret is not None
    where = place.secret(spec.ca_secret)
    now = runtime.clock()
    patch.signing_key(handle)
    data = await _read_secret(runtime, place, spec.ca_secret)
    from_secret: CAChain | None = None
    refused: IssuerError | None = None
    if data is not None:
        try:
            from_secret = check_secret_chain(
                data, handle.public_key_sha256, now, path_length=spec.path_length, where=where
            )
        except IssuerError as err:
            refused = err
    chain = _newer(from_secret, _recorded_chain(status, handle.public_key_sha256, now))
    renewal_due = chain is not None and now >= chain.not_after - spec.renew_before
    if chain is None or renewal_due:
        csr = status.ca_csr
        if not csr_matches(csr, handle.public_key_sha256, spec.subject):
            csr = await runtime.pool.create_ca_csr(
                token, handle, spec.subject, path_length=spec.path_length, rsa_pss=spec.rsa_pss
            )
        patch.ca_csr(csr)
    else:
        patch.ca_csr(None)
    if chain is None:
        if refused is not None:
            raise refused
        raise PendingError(
            f"waiting for the CA certificate: sign status.caCSR of `{place.kubectl()}` with the root (or "
            f"an intermediate under it) as a CA certificate, then `kubectl create secret generic "
            f"{spec.ca_secret} -n {place.secret_namespace} --from-file={CERTIFICATE} --from-file={ROOT}` "
            f"({CERTIFICATE}: the signed certificate then any intermediates; {ROOT}: the root)",
            api.REASON_AWAITING_CA_CERTIFICATE,
        )
    outcome = _publish_chain(chain, handle, patch)
    note = ""
    if renewal_due:
        note = (
            f"; the CA certificate expires at {rfc3339(chain.not_after)}: a renewal "
            f"CSR (same key) is in status.caCSR; put the new certificate into Secret {where}"
        )
    if refused is not None:
        note += f"; the certificate in Secret {where} was refused ({refused.reason}): {refused.message}"
    return Outcome(outcome.handle, outcome.ca_pem, outcome.trust_pem, note)
