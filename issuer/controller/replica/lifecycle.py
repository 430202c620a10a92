"""Operator start-up and shut-down: settings, token profiles, the signer pool, the API client, the
request path (its watches, work queue and Event posters) and kopf's own settings (persistence under
our API group); and the replica around kopf that ``trusted-issuer run`` starts: warm signer pool,
probes, metrics and the Lease election.

A replica starts its signing workers, its probe and metrics servers and its token readiness checks
first, in every role; then, with leader election on, it waits as a standby until it holds the Lease
(``replica/election.py``), and only then runs kopf, which handles issuers and, from its start-up handler,
starts the request path (``requests/processing.start``: our own watches, not kopf's). It runs kopf until
SIGTERM (then it stops kopf, releases the Lease and exits 0) or until it loses the Lease (the fence
has already stopped its signing and publishing; it stops kopf and exits 1, so Kubernetes restarts it
as a standby). A request that was in flight in a dead leader is unfinished in the API server, so the
next leader's first listing queues it: nothing is lost, and nothing is published twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import kopf

from issuer import api, metrics
from issuer.clock import utcnow
from issuer.controller.issuers import reconcile
from issuer.controller.kubeapi import Credentials, KubeClient
from issuer.controller.registry import IssuerRegistry
from issuer.controller.replica import health as probes
from issuer.controller.replica.election import (
    FencedKubeClient,
    FencedSigner,
    Leadership,
    LeaseElector,
    LeaseTiming,
    default_identity,
    lease_namespace,
)
from issuer.controller.requests import processing as requests
from issuer.controller.runtime import Runtime
from issuer.profiles import Profiles, load_profiles
from issuer.settings import Settings
from issuer.signer.api import Signer, SignerPool

log = logging.getLogger("trusted-issuer.replica")

#: Exit status of a replica that lost the Lease (Kubernetes restarts it as a standby).
EXIT_LOST_LEASE = 1


def configure_kopf(settings: kopf.OperatorSettings) -> None:
    """kopf's marks on our own issuers live under our API group; kopf never sees requests."""
    settings.persistence.finalizer = f"{api.GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=api.GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=api.GROUP, key="last-handled-configuration"
    )
    # Handler log lines become Kubernetes Events only when they matter to a person.
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    settings.networking.request_timeout = 60


@dataclass
class Replica:
    """What ``run_replica`` prepared before kopf started; kopf's start-up takes it from the memo."""

    settings: Settings
    profiles: Profiles
    pool: Signer
    health: probes.Health
    leadership: Leadership | None
    #: kopf's stop flag for this run; see ``cleanup``.
    stop_flag: asyncio.Event
    #: Namespaces whose requests are served (``run --namespace``); empty: all of them.
    namespaces: Collection[str] = ()


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    configure_kopf(settings)
    replica: Replica | None = memo.get("replica")
    namespaces: Collection[str] = replica.namespaces if replica is not None else ()
    credentials = await asyncio.to_thread(Credentials.load)
    if replica is not None:
        config, profiles, pool = replica.settings, replica.profiles, replica.pool
        client: KubeClient = (
            KubeClient(credentials, concurrency=config.concurrency)
            if replica.leadership is None
            else FencedKubeClient(credentials, replica.leadership, concurrency=config.concurrency)
        )
    else:  # `kopf run -m issuer.controller`: no election, no probes of ours, requests of every namespace
        config = Settings.from_env()
        profiles = load_profiles(config.profiles_file, config)
        pool = SignerPool(config.workers, start_method=config.worker_start_method)  # type: ignore[arg-type]
        await asyncio.to_thread(pool.start)
        client = KubeClient(credentials, concurrency=config.concurrency)
        metrics.watch_pool(lambda: pool.workers, lambda: pool.restarts)
        metrics.serve(config.metrics_port, address=config.metrics_bind_address)
    # kopf watches resources only once start-up handlers are done, so the issuer handlers registered
    # here are in place before the first event of either path (``trusted-issuer run``, ``kopf run``).
    reconcile.register_handlers(config)
    if not profiles.by_name:
        logger.warning(
            "no token profiles configured: every issuer will wait (set TRUSTED_ISSUER_PROFILES_FILE)"
        )
    runtime = Runtime(
        settings=config,
        profiles=profiles,
        pool=pool,
        client=client,
        clock=utcnow,
        issuers=IssuerRegistry(),
        namespaces=frozenset(namespaces),
    )
    metrics.watch_queue(lambda: len(runtime.requests.queue), lambda: runtime.requests.queue.in_flight)
    memo["runtime"] = runtime
    requests.start(runtime, namespaces)
    names = sorted(profiles.by_name)
    logger.info(
        f"started workers={config.workers} concurrency={config.concurrency} profiles={names} "
        f"namespaces={sorted(namespaces) or 'all'} issuer-kinds={list(config.issuer_kinds)}"
    )


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    runtime: Runtime | None = memo.get("runtime")
    if runtime is None:
        return
    runtime.requests.queue.close()
    for task in runtime.tasks:
        task.cancel()
    await asyncio.gather(*runtime.tasks, return_exceptions=True)
    await runtime.client.close()
    replica: Replica | None = memo.get("replica")
    if replica is None:
        await asyncio.to_thread(runtime.pool.close)
        return
    # A replica's pool outlives kopf (run_replica closes it). Raising the stop flag when kopf stops on
    # a signal ends kopf's own waiter for that flag, which kopf would otherwise wait out as a hung task
    # for 5 s, holding the Lease (and the failover) back.
    replica.stop_flag.set()


@kopf.on.probe(id="role")
def probe_role(memo: kopf.Memo, **_: Any) -> str:
    """On kopf's liveness endpoint (``--liveness``): this replica's role."""
    replica: Replica | None = memo.get("replica")
    return replica.health.role if replica is not None else "leader"


@kopf.on.probe(id="canSign")
def probe_can_sign(memo: kopf.Memo, **_: Any) -> bool | None:
    """On kopf's liveness endpoint: the readiness answer (None when run as a bare kopf module)."""
    replica: Replica | None = memo.get("replica")
    return replica.health.ready()[0] if replica is not None else None


def run_replica(
    settings: Settings,
    *,
    namespaces: Collection[str] = (),
    liveness_endpoint: str | None = None,
) -> int:
    """Run one replica until SIGTERM (exit 0) or a lost Lease (exit 1); see the module docstring."""
    return asyncio.run(_replica(settings, namespaces, liveness_endpoint))


async def _replica(settings: Settings, namespaces: Collection[str], liveness_endpoint: str | None) -> int:
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    profiles = load_profiles(settings.profiles_file, settings)
    health = probes.Health()
    pool = SignerPool(settings.workers, start_method=settings.worker_start_method)  # type: ignore[arg-type]
    signer = FencedSigner(pool)
    tasks = [asyncio.create_task(probes.heartbeat(health), name="heartbeat")]
    server = await probes.serve(health, settings.health_port) if settings.health_port else None
    metrics.watch_pool(lambda: pool.workers, lambda: pool.restarts)
    metrics.watch_leadership(lambda: health.role == "leader")
    metrics.serve(settings.metrics_port, address=settings.metrics_bind_address)
    elector: LeaseElector | None = None
    lost = False
    try:
        # Warm before anything else: a standby that takes over signs at once.
        await asyncio.to_thread(pool.start)
        health.workers_started = True
        interval = settings.readiness_interval.total_seconds()
        tasks.append(asyncio.create_task(probes.watch_tokens(health, pool, profiles.by_name, interval)))
        if settings.leader_election:
            elector = _elector(settings, await asyncio.to_thread(Credentials.load))
            signer.fence = elector.leadership
            health.role = "standby"
            log.info(
                f"standby identity={elector.identity} lease={elector.namespace}/{elector.name} "
                f"failover-bound={elector.timing.failover_bound():g}s"
            )
            if not await elector.acquire(stopping):
                return 0
        health.role = "leader"
        lost = await _lead(
            settings, profiles, signer, health, elector, stopping, namespaces, liveness_endpoint
        )
    finally:
        health.role = "stopping"
        if elector is not None:
            if not lost:
                await elector.release()
            await elector.client.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.to_thread(pool.close)
        await probes.stop(server)
    if lost:
        log.error("exiting: this replica lost the lease and restarts as a standby")
        return EXIT_LOST_LEASE
    return 0


def _elector(settings: Settings, credentials: Credentials) -> LeaseElector:
    timing = LeaseTiming(
        duration=settings.lease_duration.total_seconds(),
        renew_deadline=settings.renew_deadline.total_seconds(),
        retry_period=settings.retry_period.total_seconds(),
    )
    # Its own connections, so a burst of status writes never delays a renewal.
    client = KubeClient(credentials, concurrency=2, timeout=timing.renew_deadline)
    return LeaseElector(
        client,
        namespace=lease_namespace(settings.lease_namespace),
        name=settings.lease_name,
        identity=default_identity(),
        timing=timing,
    )


async def _lead(
    settings: Settings,
    profiles: Profiles,
    pool: Signer,
    health: probes.Health,
    elector: LeaseElector | None,
    stopping: asyncio.Event,
    namespaces: Collection[str],
    liveness_endpoint: str | None,
) -> bool:
    """Run kopf while this replica leads; True if it stopped because the Lease was lost."""
    stop_flag = asyncio.Event()
    keeper = asyncio.create_task(elector.keep() if elector else asyncio.Event().wait(), name="lease")
    watchers = [
        keeper,
        asyncio.create_task(stopping.wait(), name="stopping"),  # SIGTERM before kopf took the signals
    ]
    for watcher in watchers:
        watcher.add_done_callback(lambda _: stop_flag.set())
    memo = kopf.Memo()
    leadership = elector.leadership if elector else None
    memo["replica"] = Replica(settings, profiles, pool, health, leadership, stop_flag, namespaces)
    try:
        await kopf.operator(
            clusterwide=not namespaces,
            namespaces=namespaces,
            standalone=True,
            liveness_endpoint=liveness_endpoint,
            stop_flag=stop_flag,
            memo=memo,
        )
    finally:
        lost = keeper.done() and not keeper.cancelled()
        for watcher in watchers:
            watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*watchers, return_exceptions=True)
    return lost
