"""List, then watch, one collection: client-go's reflector, without its cache, for the request kinds.

Requests are watched here and not through kopf: kopf runs each event through its per-object
machinery (a worker per object, handler bookkeeping, a log line per handler), which was most of the
operator's own time in a burst. A reflector lists the collection a page at a time, then watches from
the listing's resourceVersion with bookmarks, and hands every object to ``observe`` as a watch event
(listed objects as ADDED). When the stream ends or drops it watches again from the last version it
saw; when that version is gone (410) it lists again, and then reports the names the listing held
(``listed``), so whoever keeps objects can forget those deleted while it was not watching.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from issuer.backoff import backoff
from issuer.controller.kubeapi import Gone, KubeClient, Listing, NotFound

log = logging.getLogger("trusted-issuer.watch")

#: (namespace or "", name) of an object.
ObjectName = tuple[str, str]
WatchEvent = dict[str, Any]

#: Seconds the API server keeps one watch stream open (kube-apiserver caps it at 30 to 60 minutes).
WATCH_TIMEOUT = 300
MIN_BACKOFF = 0.5
MAX_BACKOFF = 30.0


def _name_of(obj: dict[str, Any]) -> ObjectName:
    meta = obj.get("metadata") or {}
    return (str(meta.get("namespace") or ""), str(meta.get("name") or ""))


class Reflector:
    """Keeps ``observe`` told of every change to the collection at ``path`` (``run`` until cancelled).

    ``observe`` is called on the event loop, for each object, in the API server's order; it must not
    block and should not raise (an exception is logged and the event skipped). ``listed`` is called
    after each complete listing with the names it held."""

    def __init__(
        self,
        client: KubeClient,
        path: str,
        observe: Callable[[WatchEvent], None],
        *,
        listed: Callable[[set[ObjectName]], None] | None = None,
        timeout_seconds: int = WATCH_TIMEOUT,
        page_size: int = 500,
    ) -> None:
        self.client = client
        self.path = path
        self.observe = observe
        self.listed = listed
        self.timeout_seconds = timeout_seconds
        self.page_size = page_size
        #: Set once the first complete listing has been observed.
        self.synced = asyncio.Event()
        #: Complete listings and watch streams started so far (for tests and logs).
        self.listings = 0
        self.watches = 0
        #: Watch events received so far, bookmarks included (progress, for the backoff).
        self.events = 0
        #: The resourceVersion to resume from: the listing's, then the last event's; "" lists again.
        self.version = ""

    async def run(self) -> None:
        failures = 0
        while True:
            pause = backoff(failures, first=MIN_BACKOFF, cap=MAX_BACKOFF)
            before = self.events
            try:
                if not self.version:
                    self.version = await self._list()
                await self._watch()
                if self.events == before:
                    await asyncio.sleep(pause)  # a stream cut before it said anything
            except Gone:
                log.info(f"watch path={self.path} version={self.version} is gone (410): listing again")
                self.version = ""
                if self.events == before:
                    await asyncio.sleep(pause)  # gone right after a listing: relist at a pace
            except Exception as err:  # API trouble, or a kind not served (yet): never stop watching
                why = "not served (404)" if isinstance(err, NotFound) else str(err) or type(err).__name__
                log.warning(f"watch path={self.path} failed: {why}; again in {pause:g}s")
                await asyncio.sleep(pause)
            # Progress (any event, bookmarks included) resets the backoff; failing in a row grows it.
            failures = 0 if self.events > before else failures + 1

    async def _list(self) -> str:
        """Observe every object as ADDED; the listing's resourceVersion."""
        listing = Listing()
        names: set[ObjectName] = set()
        async for items in self.client.list_pages(self.path, self.page_size, listing=listing):
            for item in items:
                names.add(_name_of(item))
                self._observe({"type": "ADDED", "object": item})
        self.listings += 1
        if self.listed is not None:
            self.listed(names)
        self.synced.set()
        log.debug(f"listed path={self.path} objects={len(names)} version={listing.resource_version}")
        return listing.resource_version

    async def _watch(self) -> None:
        """One watch stream from ``self.version``, which follows every event as it is observed, so a
        stream that ends, drops or fails half-way resumes after the last event seen and never replays
        one (a replayed old version of a request would put a stale body back in the store)."""
        self.watches += 1
        async for event in self.client.watch(self.path, self.version, timeout_seconds=self.timeout_seconds):
            self.events += 1
            if event.get("type") != "BOOKMARK":
                self._observe(event)
            obj = event.get("object") or {}
            self.version = str((obj.get("metadata") or {}).get("resourceVersion") or self.version)

    def _observe(self, event: WatchEvent) -> None:
        try:
            self.observe(event)
        except Exception:
            log.exception(f"observing an event of path={self.path} failed; skipped")
