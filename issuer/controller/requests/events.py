"""Kubernetes Events about requests (Issued, Failed, Denied, Retrying), posted off the signing path.

A request's Event is queued and posted by background tasks, so a slow or failing API server delays
no signature and no status write. The queue is bounded: when it is full an Event is dropped and
counted (``trusted_issuer_events_dropped``), and Events still queued when the operator stops are not
posted: Events are for people, the request's status is the record. The body is the one kopf posted
before (core/v1 Event, ``involvedObject`` the request).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from issuer import metrics
from issuer.clock import rfc3339_micro
from issuer.controller.kubeapi import KubeClient

log = logging.getLogger("trusted-issuer.events")

COMPONENT = "trusted-issuer"
MAX_MESSAGE_LENGTH = 1024
#: Where Events about cluster-scoped objects (Kubernetes CSRs) go, as kopf posted them.
CLUSTER_SCOPED_NAMESPACE = "default"
#: A full queue is logged at its first dropped Event and then once per this many.
DROP_LOG_EVERY = 1000


def event_body(
    body: Mapping[str, Any], type_: str, reason: str, message: str, now: datetime, instance: str
) -> dict[str, Any]:
    """The core/v1 Event about the object ``body`` (only its apiVersion, kind and metadata are read)."""
    meta = body.get("metadata") or {}
    namespace = meta.get("namespace") or CLUSTER_SCOPED_NAMESPACE
    if len(message) > MAX_MESSAGE_LENGTH:
        half = MAX_MESSAGE_LENGTH // 2 - 2
        message = f"{message[:half]}...{message[-half:]}"
    stamp = now.isoformat()
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"namespace": namespace, "generateName": f"{COMPONENT}-"},
        "type": type_,
        "reason": reason,
        "message": message,
        "action": reason,
        "reportingComponent": COMPONENT,
        "reportingInstance": instance,
        "source": {"component": COMPONENT},
        "involvedObject": {
            "apiVersion": body.get("apiVersion"),
            "kind": body.get("kind"),
            "name": meta.get("name"),
            "uid": meta.get("uid"),
            "namespace": namespace,
        },
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "eventTime": rfc3339_micro(now),
    }


class EventPoster:
    """A bounded queue of Events and the tasks (``run``) that post them; ``post`` never blocks."""

    def __init__(self, client: KubeClient, *, max_queued: int = 1000) -> None:
        self.client = client
        self.instance = socket.gethostname()
        self.dropped = 0
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(max_queued)

    def post(self, body: Mapping[str, Any], type_: str, reason: str, message: str) -> bool:
        """Queue an Event about ``body``; False (and counted) when the queue is full."""
        event = event_body(body, type_, reason, message, datetime.now(UTC), self.instance)
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            if self.dropped % DROP_LOG_EVERY == 0:
                log.warning(
                    f"event queue full (max {self._queue.maxsize}): dropped an event reason={reason}; "
                    f"{self.dropped + 1} dropped so far"
                )
            self.dropped += 1
            metrics.EVENTS_DROPPED.inc()
            return False
        return True

    def __len__(self) -> int:
        return self._queue.qsize()

    async def run(self) -> None:
        """Post queued Events one at a time until cancelled; a failed post is logged and dropped (a
        standby's fenced client refuses every post, which is as it should be)."""
        while True:
            event = await self._queue.get()
            namespace = event["metadata"]["namespace"]
            try:
                await self.client.request(
                    "POST", f"/api/v1/namespaces/{namespace}/events", event, answer=False
                )
            except Exception as err:  # an Event is never worth more than a log line
                log.warning(
                    f"could not post event reason={event['reason']} "
                    f"object={namespace}/{event['involvedObject']['name']}: {err}"
                )
