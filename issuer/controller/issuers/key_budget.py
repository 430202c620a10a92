"""An issuer's share of its token's keys, counted in the token before a key is made (``key_quota``).

The count is the token's own answer (the labels of its private keys), never status: a tenant cannot
free room by rewriting its issuer's status. Counting and making a key happen under one lock per token and
scope, so two issuers of a namespace reconciled at once cannot both take the last slot.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from issuer import metrics
from issuer.controller.runtime import Runtime
from issuer.key_quota import KeyUsage, usage
from issuer.tokens import TokenConfig

_locks: dict[tuple[TokenConfig, str], asyncio.Lock] = {}


@dataclass
class KeyBudget:
    """The key share of one issuer's scope (``prefix``: ``ti:ns/<namespace>/`` or ``ti:cluster/``) in
    the token of profile ``profile``; ``limit`` None: unbounded."""

    runtime: Runtime
    token: TokenConfig
    profile: str
    prefix: str
    limit: int | None
    issuer: str
    #: What the last count found (this reconciliation's), for ``status.keyQuota``.
    counted: KeyUsage | None = None

    async def count(self) -> KeyUsage:
        """Count the scope's keys in the token now, and publish the count as a metric."""
        reports = await self.runtime.pool.list_keys(self.token)
        self.counted = usage((r.handle.key_label for r in reports), self.prefix, self.limit)
        metrics.TOKEN_KEYS.labels(self.profile, self.prefix).set(self.counted.used)
        if self.limit is not None:
            metrics.TOKEN_KEY_QUOTA.labels(self.profile, self.prefix).set(self.limit)
        return self.counted

    @asynccontextmanager
    async def room(self, wanted: str) -> AsyncIterator[None]:
        """Hold room for one more key (``wanted`` names it in the refusal): raises ``KeyQuotaExceeded``
        if the scope is at its share; the key must be made inside the block."""
        if self.limit is None:
            yield
            return
        async with _locks.setdefault((self.token, self.prefix), asyncio.Lock()):
            current = await self.count()
            current.check_room(self.issuer, wanted)
            yield
            self.counted = KeyUsage(current.scope, current.used + 1, current.limit)
            metrics.TOKEN_KEYS.labels(self.profile, self.prefix).set(self.counted.used)
