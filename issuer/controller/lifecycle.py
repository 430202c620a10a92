"""Operator start-up and shut-down: settings, token profiles, the signer pool, the API client, the
request work queue and kopf's own settings (persistence under our API group)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import kopf

from issuer import api, metrics
from issuer.controller.issuers import IssuerRegistry
from issuer.controller.kubeapi import Credentials, KubeClient
from issuer.controller.runtime import Runtime
from issuer.profiles import load_profiles
from issuer.settings import Settings
from issuer.signer.pool import SignerPool
from issuer.signer.x509 import utcnow


def configure_kopf(settings: kopf.OperatorSettings) -> None:
    """kopf's marks on our own issuers live under our API group; kopf never touches requests."""
    settings.persistence.finalizer = f"{api.GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=api.GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=api.GROUP, key="last-handled-configuration"
    )
    # Handler log lines become Kubernetes Events only when they matter to a person.
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    # kopf keeps a worker per object, holding its last body, this long after its last event: at the
    # default 5 s, listing 9,000 requests at start-up held them all at once (peak RSS +52 MiB in
    # make bench). Events of one object rarely come closer together than this.
    settings.queueing.idle_timeout = 0.5
    settings.networking.request_timeout = 60


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    configure_kopf(settings)
    config = Settings.from_env()
    profiles = load_profiles(config.profiles_file, config)
    if not profiles.by_name:
        logger.warning(
            "no token profiles configured: every issuer will wait (set TRUSTED_ISSUER_PROFILES_FILE)"
        )
    pool = SignerPool(config.workers, start_method=config.worker_start_method)  # type: ignore[arg-type]
    await asyncio.to_thread(pool.start)
    credentials = await asyncio.to_thread(Credentials.load)
    runtime = Runtime(
        settings=config,
        profiles=profiles,
        pool=pool,
        client=KubeClient(credentials, concurrency=config.concurrency),
        clock=utcnow,
        issuers=IssuerRegistry(),
    )
    # The request workers start with the first watch event (requests.observe), inside kopf's own
    # context, which carries what kopf.event() needs to post Events.
    metrics.watch_pool(lambda: pool.workers, lambda: pool.restarts)
    metrics.watch_queue(lambda: len(runtime.queue), lambda: runtime.queue.in_flight)
    metrics.serve(config.metrics_port)
    memo["runtime"] = runtime
    names = sorted(profiles.by_name)
    logger.info(f"started workers={config.workers} concurrency={config.concurrency} profiles={names}")


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    runtime: Runtime | None = memo.get("runtime")
    if runtime is None:
        return
    runtime.queue.close()
    for task in runtime.tasks:
        task.cancel()
    await asyncio.gather(*runtime.tasks, return_exceptions=True)
    await runtime.client.close()
    await asyncio.to_thread(runtime.pool.close)
