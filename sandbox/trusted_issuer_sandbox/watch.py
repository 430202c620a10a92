"""Watch streams with kube-apiserver's resourceVersion semantics.

- No ``resourceVersion`` (or ``"0"``): synthetic ADDED events for what exists now, then changes.
- ``resourceVersion=N``: exactly the changes after N; an ERROR event with a 410 Status (in a 200
  response, as the watch cache answers) when N is older than the kept history.
- ``sendInitialEvents=true``: the current objects, then a BOOKMARK annotated
  ``k8s.io/initial-events-end`` (kopf's and client-go's "watch-list" start).
- ``allowWatchBookmarks=true``: a BOOKMARK with the current version every ``bookmark_interval``.
- ``timeoutSeconds``: the stream ends then, cleanly.

An object leaving a label selector's match is not turned into a DELETED event (kube-apiserver does);
events are filtered on the object's state after the change.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

from trusted_issuer_sandbox.errors import ApiError
from trusted_issuer_sandbox.resources import ResourceType
from trusted_issuer_sandbox.selectors import FieldSelector, LabelSelector
from trusted_issuer_sandbox.store import ObjectStore, selects

INITIAL_EVENTS_END = "k8s.io/initial-events-end"


@dataclass(frozen=True)
class WatchOptions:
    """What one watch request asks for (from its query string)."""

    namespace: str | None = None
    labels: LabelSelector | None = None
    fields: FieldSelector | None = None
    resource_version: int | None = None
    send_initial_events: bool = False
    bookmarks: bool = False
    timeout: float = 1800.0


def _bookmark(rtype: ResourceType, resource_version: int, *, initial_end: bool = False) -> dict[str, Any]:
    metadata: dict[str, Any] = {"resourceVersion": str(resource_version)}
    if initial_end:
        metadata["annotations"] = {INITIAL_EVENTS_END: "true"}
    return {
        "type": "BOOKMARK",
        "object": {"kind": rtype.kind, "apiVersion": rtype.api_version, "metadata": metadata},
    }


async def watch_events(
    store: ObjectStore,
    rtype: ResourceType,
    options: WatchOptions,
    *,
    bookmark_interval: float,
    stopping: asyncio.Event,
) -> AsyncGenerator[dict[str, Any], None]:
    """Yield watch events (``{"type": ..., "object": ...}``) until timeout, ``stopping``, or a 410."""
    loop = asyncio.get_running_loop()
    changed = asyncio.Event()

    def on_change() -> None:
        # A write from a thread whose loop has already closed must not fail because of a watch.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(changed.set)

    store.add_listener(on_change)
    try:
        deadline = loop.time() + options.timeout
        if options.resource_version is None or options.send_initial_events:
            items, cursor = store.select(rtype, options.namespace, options.labels, options.fields)
            for item in items:
                yield {"type": "ADDED", "object": item}
            if options.send_initial_events:
                yield _bookmark(rtype, cursor, initial_end=True)
        else:
            cursor = options.resource_version
        next_bookmark = loop.time() + bookmark_interval
        while True:
            changed.clear()
            try:
                events, current = store.events_since(cursor)
            except ApiError as e:
                yield {"type": "ERROR", "object": e.as_status()}
                return
            for event in events:
                if event.key[:2] != rtype.key or options.namespace not in (None, event.key[2]):
                    continue
                if selects(event.object, options.labels, options.fields):
                    yield {"type": event.type, "object": {**event.object, "apiVersion": rtype.api_version}}
            cursor = current
            now = loop.time()
            if now >= deadline or stopping.is_set():
                return
            if options.bookmarks and now >= next_bookmark:
                yield _bookmark(rtype, cursor)
                next_bookmark = now + bookmark_interval
            wake_at = min(deadline, next_bookmark) if options.bookmarks else deadline
            await _wait_any(changed, stopping, timeout=max(0.0, wake_at - now))
    finally:
        store.remove_listener(on_change)


async def _wait_any(*events: asyncio.Event, timeout: float) -> None:
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        for waiter in waiters:
            with contextlib.suppress(asyncio.CancelledError):
                await waiter
