"""What the handlers share for the operator's lifetime, built once at start-up and kept in kopf's memo."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from issuer.controller.kubeapi import KubeClient
from issuer.controller.queue import WorkQueue
from issuer.profiles import Profiles
from issuer.settings import Settings
from issuer.signer.pool import SignerPool

if TYPE_CHECKING:
    from issuer.controller.issuers import IssuerRegistry

RequestKey = tuple[str, str, str]  # (plural, namespace or "", name)


@dataclass
class Runtime:
    settings: Settings
    profiles: Profiles
    pool: SignerPool
    client: KubeClient
    clock: Callable[[], datetime]
    issuers: IssuerRegistry
    queue: WorkQueue[RequestKey] = field(default_factory=WorkQueue)
    #: The latest body seen of each CertificateRequest of ours that is not finished yet.
    requests: dict[RequestKey, dict[str, Any]] = field(default_factory=dict)
    #: Retry counts of requests failing with passing errors, for backoff.
    attempts: dict[RequestKey, int] = field(default_factory=dict)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
