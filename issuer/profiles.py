"""Token profiles: the operator's named ways to reach a token, and who may use each.

A PIN opens a whole token, so PINs belong to the operator, never to a namespace. The operator reads a
YAML file (``TRUSTED_ISSUER_PROFILES_FILE``, mounted from a Secret or ConfigMap in a cluster)::

    profiles:
      softhsm:
        module: /usr/lib/softhsm/libsofthsm2.so
        tokenLabel: trusted-issuer
        pinFile: /var/run/trusted-issuer/pins/softhsm
        namespaces: [istio-system, default]   # optional: TrustedIssuers of these namespaces only
        clusterIssuers: true                  # optional (default true): TrustedClusterIssuers may use it
        attestation: none                     # optional (default none): who vouches for wrapping keys
        keyQuota:                             # optional: keys each scope may hold (issuer/key_quota.py)
          perNamespace: 10
          clusterIssuers: 20

Without a file, one profile named ``default`` is built from ``TRUSTED_ISSUER_PKCS11_MODULE``,
``TRUSTED_ISSUER_TOKEN_LABEL``/``_SERIAL`` and ``TRUSTED_ISSUER_PIN_FILE``/``TRUSTED_ISSUER_PIN``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from issuer.attestation import check_provider_name
from issuer.errors import ConfigurationError, IssuerError
from issuer.key_quota import KeyQuota
from issuer.settings import DEFAULT_PKCS11_MODULE, Settings
from issuer.tokens import PinSource, TokenConfig

DEFAULT_PROFILE = "default"
_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


@dataclass(frozen=True)
class TokenProfile:
    name: str
    token: TokenConfig
    namespaces: frozenset[str] | None = None
    cluster_issuers: bool = True
    key_quota: KeyQuota = field(default_factory=KeyQuota)

    @property
    def attestation(self) -> str:
        """The attestation provider that vouches for this token's wrapping keys (``none`` by default)."""
        return self.token.attestation

    def check_allowed(self, namespace: str | None) -> None:
        """Refuse an issuer of ``namespace`` (None: a cluster issuer) that this profile does not serve."""
        if namespace is None:
            if not self.cluster_issuers:
                raise IssuerError(
                    f"token profile {self.name!r} is not open to TrustedClusterIssuers", "ProfileNotAllowed"
                )
            return
        if self.namespaces is not None and namespace not in self.namespaces:
            raise IssuerError(
                f"token profile {self.name!r} is not open to namespace {namespace!r}", "ProfileNotAllowed"
            )


@dataclass(frozen=True)
class Profiles:
    by_name: Mapping[str, TokenProfile]

    def get(self, name: str) -> TokenProfile:
        try:
            return self.by_name[name]
        except KeyError:
            known = ", ".join(sorted(self.by_name)) or "none"
            raise IssuerError(
                f"token profile {name!r} is not configured in the operator (known: {known})",
                "ProfileNotFound",
            ) from None


def _profile(name: str, data: Mapping[str, Any], origin: str) -> TokenProfile:
    if not _NAME.match(name):
        raise ConfigurationError(f"{origin}: profile name {name!r} is not a DNS label")
    if not isinstance(data, Mapping):
        raise ConfigurationError(f"{origin}: profile {name!r} must be a mapping")
    unknown = set(data) - {
        "module",
        "tokenLabel",
        "tokenSerial",
        "pinFile",
        "pinEnv",
        "namespaces",
        "clusterIssuers",
        "attestation",
        "keyQuota",
    }
    if unknown:
        raise ConfigurationError(f"{origin}: profile {name!r} has unknown fields {sorted(unknown)}")
    if "pin" in data:
        raise ConfigurationError(f"{origin}: profile {name!r} must name a pinFile, never a PIN")
    if not data.get("tokenLabel") and not data.get("tokenSerial"):
        raise ConfigurationError(f"{origin}: profile {name!r} needs tokenLabel or tokenSerial")
    if data.get("pinFile"):
        pin = PinSource(file=Path(str(data["pinFile"])))
    elif data.get("pinEnv"):
        pin = PinSource(env=str(data["pinEnv"]))
    else:
        raise ConfigurationError(f"{origin}: profile {name!r} needs pinFile")
    namespaces = data.get("namespaces")
    try:
        attestation = check_provider_name(str(data.get("attestation") or "none"))
    except ConfigurationError as err:
        raise ConfigurationError(f"{origin}: profile {name!r}: {err.message}") from None
    return TokenProfile(
        name=name,
        token=TokenConfig(
            module=str(data.get("module") or DEFAULT_PKCS11_MODULE),
            token_label=str(data["tokenLabel"]) if data.get("tokenLabel") else None,
            token_serial=str(data["tokenSerial"]) if data.get("tokenSerial") else None,
            pin=pin,
            attestation=attestation,
        ),
        namespaces=None if namespaces is None else frozenset(str(n) for n in namespaces),
        cluster_issuers=bool(data.get("clusterIssuers", True)),
        key_quota=KeyQuota.parse(data.get("keyQuota"), f"{origin}: profile {name!r}"),
    )


def load_profiles(path: Path | None, settings: Settings) -> Profiles:
    """Profiles from ``path``, or the single ``default`` profile from the settings."""
    if path is None:
        if not settings.token_label and not settings.token_serial:
            return Profiles({})
        token = settings.token()
        return Profiles({DEFAULT_PROFILE: TokenProfile(DEFAULT_PROFILE, token)})
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as err:
        raise ConfigurationError(f"cannot read profiles file {path}: {err.strerror}") from None
    except yaml.YAMLError as err:
        raise ConfigurationError(f"profiles file {path} is not YAML: {err}") from None
    raw = data.get("profiles") if isinstance(data, Mapping) else None
    if not isinstance(raw, Mapping):
        raise ConfigurationError(f"profiles file {path} needs a 'profiles' mapping")
    return Profiles({str(n): _profile(str(n), d, str(path)) for n, d in raw.items()})
