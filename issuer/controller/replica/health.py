"""Liveness and readiness of one replica, served on ``/healthz`` and ``/readyz`` in every role.

- **Liveness** says the process and its event loop are healthy: the answer comes from a handler on
  the event loop itself, and a heartbeat task must have ticked recently. It never depends on the
  token: a token that is away or a PIN that is wrong is not fixed by a restart, and a liveness probe
  tied to it would only turn an outage into a restart loop.
- **Readiness** says this replica can sign now: its signing workers are running and, on the latest
  check, a worker logged in to the token of at least one token profile. A standby answers by the same
  rule (a warm standby is ready), so a rolling update proceeds while the old pod still holds the
  Lease; which replica signs is the Lease's business, not the Service's (no traffic is routed here).

kopf's own liveness endpoint exists only while kopf runs, and a standby does not run kopf yet, so this
small aiohttp server answers for both roles. The same facts are also reported through kopf's probe
handlers (``replica/lifecycle.py``) on kopf's endpoint when ``--liveness`` is given.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from issuer.api import ENV_PREFIX
from issuer.errors import ConfigurationError, TrustedIssuerError
from issuer.profiles import TokenProfile
from issuer.signer.api import Signer

log = logging.getLogger("trusted-issuer.health")

HEARTBEAT_INTERVAL = 1.0
#: A loop that has not run its heartbeat for this long is stalled (a blocked call, a starved process).
STALLED_AFTER = 15.0


@dataclass
class TokenState:
    reached: bool = False
    reason: str = "NotCheckedYet"


@dataclass
class Health:
    """What the probes report; updated by the replica's tasks, read by the HTTP handlers."""

    role: str = "starting"  # starting, standby, leader, stopping
    workers_started: bool = False
    tokens: dict[str, TokenState] = field(default_factory=dict)
    beat: float = field(default_factory=time.monotonic)

    def live(self) -> tuple[bool, dict[str, Any]]:
        stalled = time.monotonic() - self.beat
        return stalled < STALLED_AFTER, {"role": self.role, "loopLagSeconds": round(stalled, 3)}

    def ready(self) -> tuple[bool, dict[str, Any]]:
        reached = [name for name, state in sorted(self.tokens.items()) if state.reached]
        ok = self.workers_started and bool(reached)
        return ok, {
            "role": self.role,
            "ready": ok,
            "workersStarted": self.workers_started,
            # Reason codes only (PINIncorrect, TokenNotFound, ...): never a message that could carry more.
            "tokens": {name: state.reason for name, state in sorted(self.tokens.items())},
        }


async def heartbeat(health: Health) -> None:
    """Tick while the event loop runs freely; runs until cancelled."""
    while True:
        health.beat = time.monotonic()
        await asyncio.sleep(HEARTBEAT_INTERVAL)


async def check_tokens(health: Health, pool: Signer, profiles: Mapping[str, TokenProfile]) -> None:
    """One readiness check: a worker logs in to each profile's token and lists its keys, all profiles
    at once (one slow token does not hold the others' answers back). A PIN the token rejected is not
    retried by the worker until it changes, so checking never locks a PIN."""

    async def check(state: TokenState, profile: TokenProfile) -> None:
        try:
            await pool.list_keys(profile.token)
        except TrustedIssuerError as err:
            state.reached, state.reason = False, err.reason
        except RuntimeError:  # the pool is closed: the replica is stopping
            state.reached, state.reason = False, "Stopping"
        else:
            state.reached, state.reason = True, "Reached"

    states = {name: health.tokens.setdefault(name, TokenState()) for name in profiles}
    await asyncio.gather(*(check(states[name], profile) for name, profile in profiles.items()))


async def watch_tokens(
    health: Health, pool: Signer, profiles: Mapping[str, TokenProfile], interval: float
) -> None:
    """Check every ``interval`` seconds; runs until cancelled."""
    while True:
        try:
            await check_tokens(health, pool, profiles)
        except Exception:  # a readiness check must never end the watch
            log.exception("token readiness check failed")
        await asyncio.sleep(interval)


async def serve(health: Health, port: int, host: str = "0.0.0.0") -> web.AppRunner:  # noqa: S104
    """Serve ``/healthz`` and ``/readyz`` (JSON; 200 or 503); the caller cleans the runner up."""

    async def healthz(_: web.Request) -> web.Response:
        ok, body = health.live()
        return web.json_response(body, status=200 if ok else 503)

    async def readyz(_: web.Request) -> web.Response:
        ok, body = health.ready()
        return web.json_response(body, status=200 if ok else 503)

    app = web.Application()
    app.add_routes([web.get("/healthz", healthz), web.get("/readyz", readyz)])
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as err:
        await runner.cleanup()
        raise ConfigurationError(
            f"cannot serve the probes on port {port}: {err.strerror}; set {ENV_PREFIX}HEALTH_PORT"
        ) from None
    return runner


async def stop(runner: web.AppRunner | None) -> None:
    if runner is not None:
        with contextlib.suppress(Exception):
            await runner.cleanup()
