"""Every Prometheus metric of trusted-issuer, in one place (names: ``trusted_issuer_`` prefix, base units).

Served by the operator on ``TRUSTED_ISSUER_METRICS_PORT`` (default 9402, 0 turns it off). Labels are
bounded by what exists in the cluster (issuers, request kinds, reasons), never by requests.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

CERTIFICATES_ISSUED = Counter(
    "trusted_issuer_certificates_issued",
    "Certificates signed and published, by issuer and request kind.",
    ["issuer", "kind"],
)
REQUESTS_FAILED = Counter(
    "trusted_issuer_requests_failed",
    "Requests that ended Failed or Denied, by issuer, request kind and reason.",
    ["issuer", "kind", "reason"],
)
SIGNING_SECONDS = Histogram(
    "trusted_issuer_signing_duration_seconds",
    "From taking an approved request to publishing its certificate (whole request).",
    ["kind"],
    buckets=_LATENCY_BUCKETS,
)
TOKEN_OPERATION_SECONDS = Histogram(
    "trusted_issuer_token_operation_duration_seconds",
    "Signer pool operations as the operator awaits them (token work plus hand-off to a worker).",
    ["operation"],
    buckets=_LATENCY_BUCKETS,
)
REQUESTS_IN_FLIGHT = Gauge("trusted_issuer_requests_in_flight", "Requests being processed right now.")
QUEUE_DEPTH = Gauge("trusted_issuer_queue_depth", "Requests waiting in the work queue, ready or delayed.")
WORKERS = Gauge("trusted_issuer_signing_workers", "Signing worker processes in the pool.")


class _ReadCounter(Collector):
    """A counter whose value the pool keeps (it counts restarts itself); read at scrape time, so it is
    exposed as a counter (``_total``) rather than a gauge that only ever goes up."""

    def __init__(self, name: str, documentation: str) -> None:
        self.name, self.documentation = name, documentation
        self.read: Callable[[], float] = lambda: 0.0

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(self.name, self.documentation, value=self.read())


WORKER_RESTARTS = _ReadCounter(
    "trusted_issuer_signing_worker_restarts", "Signing workers replaced after dying."
)
REGISTRY.register(WORKER_RESTARTS)
LEADER = Gauge("trusted_issuer_leader", "1 while this replica holds the Lease and signs, 0 on a standby.")
ISSUER_READY = Gauge("trusted_issuer_issuer_ready", "1 if the issuer is Ready, else 0.", ["issuer"])
TOKEN_KEYS = Gauge(
    "trusted_issuer_token_keys",
    "Private keys in a profile's token labelled in one issuer scope (ti:ns/<namespace>/ or ti:cluster/), "
    "as last counted in the token.",
    ["profile", "scope"],
)
TOKEN_KEY_QUOTA = Gauge(
    "trusted_issuer_token_key_quota",
    "The key quota of one issuer scope in a profile's token (keyQuota in the profiles file).",
    ["profile", "scope"],
)
CA_NOT_AFTER = Gauge(
    "trusted_issuer_ca_not_after_timestamp_seconds",
    "When the issuer's current CA certificate expires (Unix time).",
    ["issuer"],
)
TOKEN_LOGIN_FAILURES = Counter(
    "trusted_issuer_token_login_failures",
    "Token logins refused (wrong, locked or expired PIN), by token profile.",
    ["profile"],
)

EVENTS_DROPPED = Counter(
    "trusted_issuer_events_dropped",
    "Kubernetes Events about requests not posted because the posting queue was full.",
)


def watch_pool(workers: Callable[[], float], restarts: Callable[[], float]) -> None:
    """Read the pool's size and restart count at scrape time."""
    WORKERS.set_function(workers)
    WORKER_RESTARTS.read = restarts


def watch_leadership(leading: Callable[[], bool]) -> None:
    """Read at scrape time whether this replica is the one that signs."""
    LEADER.set_function(lambda: float(leading()))


def watch_queue(depth: Callable[[], float], in_flight: Callable[[], float]) -> None:
    QUEUE_DEPTH.set_function(depth)
    REQUESTS_IN_FLIGHT.set_function(in_flight)


def serve(port: int, registry: CollectorRegistry = REGISTRY, address: str = "0.0.0.0") -> None:  # noqa: S104
    """Expose /metrics on ``address``:``port`` (a daemon thread: it never blocks kopf's event loop);
    port 0 serves nothing."""
    if port:
        start_http_server(port, addr=address, registry=registry)
