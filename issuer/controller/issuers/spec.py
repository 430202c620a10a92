"""An issuer's spec, read once into plain values: where its key comes from, where its CA certificate
comes from, how it rotates, and what it may sign. Pure: every mistake is a PermanentError naming the field.

The API server checks the same one-of rules with CEL; they are checked here too because an API server
without CEL (and the project's sandbox) lets them through.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from issuer import api
from issuer.durations import parse_duration
from issuer.errors import ConfigurationError, PermanentError
from issuer.signer.api import Algorithm, Policy

#: The rotation phases ``spec.key.rotation.hold`` may hold (``rotation_phases.Phase``).
HOLDABLE_PHASES = ("Distributing", "Signing", "Retiring")


class KeySource(enum.StrEnum):
    GENERATE = "generate"
    ADOPT = "adopt"
    IMPORT = "import"


class CASource(enum.StrEnum):
    SELF_SIGNED = "selfSigned"
    INTERMEDIATE = "intermediate"
    #: An imported key brings its own certificate in the import Secret; ``spec.ca`` is then absent.
    IMPORTED = "imported"


@dataclass(frozen=True)
class Rotation:
    """``spec.key.rotation``: roll to a new token key when ``generation`` is raised.

    A counter the user raises (rather than a boolean or a timestamp) says exactly which key is wanted,
    survives restarts, and is idempotent: reconciling twice never makes two keys. The new CA is published
    for ``overlap`` before it signs; retired keys stay in the token unless ``destroy_retired``.
    """

    generation: int = 0
    overlap: timedelta = timedelta(hours=24)
    destroy_retired: bool = False
    #: ``hold``: the phase (``Distributing``, ``Signing``, ``Retiring``) the rotation must not leave.
    hold: str | None = None


def _invalid(message: str) -> PermanentError:
    return PermanentError(message, api.REASON_INVALID_SPEC)


def _secret_name(block: Mapping[str, Any], where: str) -> str:
    name = str(block.get("secretName") or "")
    if not name:
        raise _invalid(f"{where}.secretName is required")
    return name


@dataclass(frozen=True)
class IssuerSpec:
    profile: str
    key_source: KeySource
    algorithm: Algorithm
    adopt_label: str | None
    import_secret: str | None
    rsa_pss: bool
    ca_source: CASource
    subject: str
    ca_duration: timedelta
    renew_before: timedelta
    path_length: int | None
    ca_secret: str | None
    rotation: Rotation
    policy: Policy
    destroy_on_delete: bool

    @classmethod
    def parse(cls, spec: Mapping[str, Any]) -> IssuerSpec:
        """Read a spec; anything wrong is a PermanentError (reason ``InvalidSpec``) naming the field."""
        if not spec.get("tokenProfile"):
            raise _invalid("spec.tokenProfile is required")
        key = spec.get("key") or {}
        sources = [s for s in KeySource if key.get(s.value) is not None]
        if len(sources) > 1:
            raise _invalid("spec.key: choose one source, generate, adopt or import")
        key_source = sources[0] if sources else KeySource.GENERATE
        ca = spec.get("ca") or {}
        ca_sources = [s for s in (CASource.SELF_SIGNED, CASource.INTERMEDIATE) if ca.get(s.value) is not None]
        if len(ca_sources) > 1:
            raise _invalid("spec.ca: choose one source, selfSigned or intermediate")
        if key_source is KeySource.IMPORT:
            if ca_sources:
                raise _invalid(
                    "spec.ca must be absent with spec.key.import: the imported key's certificate comes "
                    "from the import Secret"
                )
            ca_source = CASource.IMPORTED
        elif not ca_sources:
            raise _invalid("spec.ca needs one source: selfSigned or intermediate")
        else:
            ca_source = ca_sources[0]
        ca_block: Mapping[str, Any] = ca.get(ca_source.value) or {}
        if ca_source is not CASource.IMPORTED and not ca_block.get("subject"):
            raise _invalid(f"spec.ca.{ca_source.value}.subject is required")
        rotation_block = key.get("rotation") or {}
        try:
            rotation = Rotation(
                generation=int(rotation_block.get("generation", 0)),
                overlap=parse_duration(str(rotation_block.get("overlap", "24h"))),
                destroy_retired=rotation_block.get("retiredKeyPolicy") == "Destroy",
                hold=str(rotation_block["hold"]) if rotation_block.get("hold") else None,
            )
            if rotation.hold is not None and rotation.hold not in HOLDABLE_PHASES:
                raise _invalid(
                    f"spec.key.rotation.hold must be one of {', '.join(HOLDABLE_PHASES)}, "
                    f"not {rotation.hold!r}"
                )
            if rotation.generation < 0:
                raise _invalid("spec.key.rotation.generation must not be negative")
            if rotation.generation and (key_source, ca_source) != (KeySource.GENERATE, CASource.SELF_SIGNED):
                raise _invalid(
                    "spec.key.rotation rolls to a new generated key under a self-signed CA; an imported "
                    "key or an intermediate CA is replaced by creating a new issuer"
                )
            path_length = ca_block.get("pathLength")
            parsed = cls(
                profile=str(spec["tokenProfile"]),
                key_source=key_source,
                algorithm=Algorithm.parse(str(key.get("algorithm", Algorithm.ECDSA_P256.value))),
                adopt_label=str((key.get("adopt") or {}).get("keyLabel") or "") or None,
                import_secret=(
                    _secret_name(key["import"], "spec.key.import") if key_source is KeySource.IMPORT else None
                ),
                rsa_pss=key.get("rsaSignatureScheme") == "PSS",
                ca_source=ca_source,
                subject=str(ca_block.get("subject", "")),
                ca_duration=parse_duration(str(ca_block.get("duration", "87600h"))),
                renew_before=parse_duration(str(ca_block.get("renewBefore", "720h"))),
                path_length=None if path_length is None else int(path_length),
                ca_secret=(
                    _secret_name(ca_block, "spec.ca.intermediate")
                    if ca_source is CASource.INTERMEDIATE
                    else None
                ),
                rotation=rotation,
                policy=Policy.from_spec(spec.get("policy")),
                destroy_on_delete=spec.get("deletionPolicy") == "Destroy",
            )
        except (ConfigurationError, ValueError, TypeError) as err:
            message = err.message if isinstance(err, ConfigurationError) else str(err)
            raise _invalid(f"spec: {message}") from None
        except PermanentError as err:
            if err.reason == api.REASON_INVALID_SPEC:
                raise
            raise _invalid(f"spec: {err.message}") from None
        if parsed.ca_source is CASource.SELF_SIGNED and parsed.renew_before >= parsed.ca_duration:
            # Otherwise every reconciliation would make a new CA certificate.
            raise _invalid("spec.ca.selfSigned.renewBefore must be shorter than its duration")
        return parsed
