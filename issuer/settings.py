"""Settings read once from the environment (``TRUSTED_ISSUER_*``) and command-line flags, then frozen."""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from issuer.api import ENV_PREFIX, ISSUER_KINDS
from issuer.durations import parse_duration
from issuer.errors import ConfigurationError
from issuer.tokens import PinSource, TokenConfig

#: Debian's and Ubuntu's SoftHSM2 module; any PKCS#11 module path may replace it.
DEFAULT_PKCS11_MODULE = "/usr/lib/softhsm/libsofthsm2.so"
PIN_ENV = f"{ENV_PREFIX}PIN"
PIN_FILE_ENV = f"{ENV_PREFIX}PIN_FILE"
#: A namespace name: a DNS label.
_NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


@dataclass(frozen=True)
class Settings:
    """Operator- and CLI-level settings. Secret values are never held here, only where they come from."""

    pkcs11_module: str = DEFAULT_PKCS11_MODULE
    token_label: str | None = None
    token_serial: str | None = None
    pin_file: Path | None = None
    workers: int = max(1, os.cpu_count() or 1)
    worker_start_method: str = "spawn"
    profiles_file: Path | None = None
    #: How long a request may keep failing with passing errors before it is marked Failed.
    max_retry_duration: timedelta = timedelta(minutes=5)
    #: Requests in flight at once (signing, publishing); the signer pool bounds the CPU part.
    concurrency: int = 64
    #: Port of the Prometheus /metrics endpoint; 0 turns it off.
    metrics_port: int = 9402
    #: Address the /metrics endpoint listens on (an IP literal). Every interface by default, which a
    #: Prometheus in another pod needs; 127.0.0.1 keeps the tenant-naming metrics inside the pod or host.
    metrics_bind_address: str = "0.0.0.0"  # noqa: S104  # the default a pod's scraper needs; see docs
    #: How often a Ready or broken issuer is checked again (token reachable, key present, CA renewal due).
    issuer_recheck_interval: float = 60.0
    #: How often an issuer waiting for an administrator (a wrapped key, a CA certificate) looks again.
    provisioning_recheck_interval: float = 5.0
    #: Where a TrustedClusterIssuer's Secrets live (imports, CA certificates); None: the pod's namespace.
    cluster_resource_namespace: str | None = None
    #: Where a TrustedClusterIssuer's trust-bundle ConfigMap is written (trust-manager's trust namespace,
    #: typically); None: the cluster resource namespace. Operator configuration only: a tenant never names it.
    trust_bundle_namespace: str | None = None
    #: Largest ``spec.request`` (base64 text) accepted; a larger one is Failed, never held or parsed.
    max_request_bytes: int = 64 * 1024
    #: Unfinished request bodies held in memory; beyond it only their keys are, and bodies are re-read.
    max_cached_requests: int = 2000
    #: Requests waiting in the work queue; past it, keys are refused and found again by listing.
    max_queued_requests: int = 20_000
    #: Issuer kinds this operator serves, with their requests; sharded releases leave
    #: TrustedClusterIssuers (cluster-scoped, seen by every shard) to one release of their own.
    issuer_kinds: tuple[str, ...] = ISSUER_KINDS
    # -- high availability and probes (``trusted-issuer run``; see docs/operations.md) --
    #: Hold a coordination.k8s.io/v1 Lease before signing; off means this replica always signs.
    leader_election: bool = True
    #: Name of the Lease the replicas compete for.
    lease_name: str = "trusted-issuer"
    #: Namespace of the Lease; None means the pod's own namespace (its service account's), else default.
    lease_namespace: str | None = None
    #: How long a Lease holds without renewal before a standby may take it (client-go's LeaseDuration).
    lease_duration: timedelta = timedelta(seconds=15)
    #: The leader stops signing and publishing when it has not renewed for this long (< lease_duration).
    renew_deadline: timedelta = timedelta(seconds=10)
    #: How often the leader renews and a standby tries to acquire.
    retry_period: timedelta = timedelta(seconds=2)
    #: Port of the /healthz (liveness) and /readyz (readiness) endpoints; 0 turns them off.
    health_port: int = 8080
    #: How often each token profile is checked for readiness (a worker logs in and lists keys).
    readiness_interval: timedelta = timedelta(seconds=10)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Build settings from ``env`` (default: the process environment); non-None overrides win."""
        env = os.environ if env is None else env

        def get(name: str) -> str | None:
            value = env.get(ENV_PREFIX + name, "").strip()
            return value or None

        values: dict[str, object] = {}
        if get("PKCS11_MODULE"):
            values["pkcs11_module"] = get("PKCS11_MODULE")
        values["token_label"] = get("TOKEN_LABEL")
        values["token_serial"] = get("TOKEN_SERIAL")
        if get("PIN_FILE"):
            values["pin_file"] = Path(str(get("PIN_FILE")))
        if get("WORKERS"):
            try:
                values["workers"] = int(str(get("WORKERS")))
            except ValueError:
                raise ConfigurationError(f"{ENV_PREFIX}WORKERS must be a whole number") from None
        if get("WORKER_START_METHOD"):
            values["worker_start_method"] = get("WORKER_START_METHOD")
        if get("PROFILES_FILE"):
            values["profiles_file"] = Path(str(get("PROFILES_FILE")))
        if get("MAX_RETRY_DURATION"):
            values["max_retry_duration"] = parse_duration(str(get("MAX_RETRY_DURATION")))
        if get("METRICS_PORT"):
            try:
                values["metrics_port"] = int(str(get("METRICS_PORT")))
            except ValueError:
                raise ConfigurationError(f"{ENV_PREFIX}METRICS_PORT must be a port number") from None
        if get("METRICS_BIND_ADDRESS"):
            values["metrics_bind_address"] = get("METRICS_BIND_ADDRESS")
        if get("ISSUER_RECHECK_INTERVAL"):
            values["issuer_recheck_interval"] = parse_duration(
                str(get("ISSUER_RECHECK_INTERVAL"))
            ).total_seconds()
        if get("PROVISIONING_RECHECK_INTERVAL"):
            values["provisioning_recheck_interval"] = parse_duration(
                str(get("PROVISIONING_RECHECK_INTERVAL"))
            ).total_seconds()
        values["cluster_resource_namespace"] = get("CLUSTER_RESOURCE_NAMESPACE")
        values["trust_bundle_namespace"] = get("TRUST_BUNDLE_NAMESPACE")
        values["issuer_kinds"] = issuer_kinds_from_env(env)
        for name in ("CONCURRENCY", "MAX_REQUEST_BYTES", "MAX_CACHED_REQUESTS", "MAX_QUEUED_REQUESTS"):
            if get(name):
                try:
                    values[name.lower()] = int(str(get(name)))
                except ValueError:
                    raise ConfigurationError(f"{ENV_PREFIX}{name} must be a whole number") from None
        values.update(_election_values(get))
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)  # type: ignore[arg-type]
        settings.validate()
        return settings

    def validate(self) -> None:
        if self.workers < 1:
            raise ConfigurationError(f"{ENV_PREFIX}WORKERS must be at least 1")
        if self.concurrency < 1:
            raise ConfigurationError(f"{ENV_PREFIX}CONCURRENCY must be at least 1")
        if self.issuer_recheck_interval <= 0:
            raise ConfigurationError(f"{ENV_PREFIX}ISSUER_RECHECK_INTERVAL must be positive")
        if self.provisioning_recheck_interval <= 0:
            raise ConfigurationError(f"{ENV_PREFIX}PROVISIONING_RECHECK_INTERVAL must be positive")
        if self.max_request_bytes < 1024:
            raise ConfigurationError(f"{ENV_PREFIX}MAX_REQUEST_BYTES must be at least 1024")
        if self.max_cached_requests < 0:
            raise ConfigurationError(f"{ENV_PREFIX}MAX_CACHED_REQUESTS must not be negative")
        if self.max_queued_requests < 1:
            raise ConfigurationError(f"{ENV_PREFIX}MAX_QUEUED_REQUESTS must be at least 1")
        for name, value in (
            ("CLUSTER_RESOURCE_NAMESPACE", self.cluster_resource_namespace),
            ("TRUST_BUNDLE_NAMESPACE", self.trust_bundle_namespace),
        ):
            if value is not None and not _NAMESPACE.fullmatch(value):
                raise ConfigurationError(f"{ENV_PREFIX}{name} must be a namespace name, not {value!r}")
        if self.worker_start_method not in ("spawn", "forkserver"):
            raise ConfigurationError(f"{ENV_PREFIX}WORKER_START_METHOD must be spawn or forkserver")
        if not timedelta(0) < self.retry_period < self.renew_deadline < self.lease_duration:
            raise ConfigurationError(
                f"{ENV_PREFIX}LEASE_RETRY_PERIOD < {ENV_PREFIX}LEASE_RENEW_DEADLINE < "
                f"{ENV_PREFIX}LEASE_DURATION must hold (all positive): a leader must give up before "
                "a standby may take over"
            )
        try:
            ipaddress.ip_address(self.metrics_bind_address)
        except ValueError:
            raise ConfigurationError(
                f"{ENV_PREFIX}METRICS_BIND_ADDRESS must be an IP address (0.0.0.0, ::, 127.0.0.1 ...), "
                f"not {self.metrics_bind_address!r}"
            ) from None
        if self.readiness_interval <= timedelta(0):
            raise ConfigurationError(f"{ENV_PREFIX}READINESS_INTERVAL must be positive")

    def pin_source(self) -> PinSource:
        """A PIN file wins over ``TRUSTED_ISSUER_PIN``: files stay out of the process environment."""
        if self.pin_file is not None:
            return PinSource(file=self.pin_file)
        return PinSource(env=PIN_ENV)

    def token(self) -> TokenConfig:
        if not self.token_label and not self.token_serial:
            raise ConfigurationError(
                "name the token: --token-label, --token-serial, "
                f"{ENV_PREFIX}TOKEN_LABEL or {ENV_PREFIX}TOKEN_SERIAL"
            )
        return TokenConfig(
            module=self.pkcs11_module,
            token_label=self.token_label,
            token_serial=self.token_serial,
            pin=self.pin_source(),
        )


def issuer_kinds_from_env(env: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """``TRUSTED_ISSUER_ISSUER_KINDS``: a comma-separated subset of TrustedIssuer,TrustedClusterIssuer
    (default both), as ``Settings.from_env`` reads it; the issuer handlers of these kinds are registered at
    start-up (``issuers.reconcile.register_handlers``)."""
    env = os.environ if env is None else env
    value = env.get(ENV_PREFIX + "ISSUER_KINDS", "").strip()
    if not value:
        return ISSUER_KINDS
    kinds = tuple(dict.fromkeys(k.strip() for k in value.split(",") if k.strip()))
    unknown = [k for k in kinds if k not in ISSUER_KINDS]
    if unknown or not kinds:
        raise ConfigurationError(
            f"{ENV_PREFIX}ISSUER_KINDS must name one or both of {', '.join(ISSUER_KINDS)}; got {value!r}"
        )
    return kinds


def _election_values(get: Callable[[str], str | None]) -> dict[str, object]:
    """The leader election and probe settings (``TRUSTED_ISSUER_LEASE_*``, ``HEALTH_PORT`` ...)."""
    values: dict[str, object] = {}
    election = get("LEADER_ELECTION")
    if election is not None:
        if election.lower() not in ("true", "false"):
            raise ConfigurationError(f"{ENV_PREFIX}LEADER_ELECTION must be true or false")
        values["leader_election"] = election.lower() == "true"
    for name, field in (("LEASE_NAME", "lease_name"), ("LEASE_NAMESPACE", "lease_namespace")):
        if get(name):
            values[field] = get(name)
    for name, field in (
        ("LEASE_DURATION", "lease_duration"),
        ("LEASE_RENEW_DEADLINE", "renew_deadline"),
        ("LEASE_RETRY_PERIOD", "retry_period"),
        ("READINESS_INTERVAL", "readiness_interval"),
    ):
        if get(name):
            values[field] = parse_duration(str(get(name)))
    if get("HEALTH_PORT"):
        try:
            values["health_port"] = int(str(get("HEALTH_PORT")))
        except ValueError:
            raise ConfigurationError(f"{ENV_PREFIX}HEALTH_PORT must be a port number") from None
    return values
