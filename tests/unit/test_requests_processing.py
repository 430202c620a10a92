"""A certificate is published only onto the request it was signed for: after a conflict, a request
deleted and created again under the same name (a new uid, a new CSR) does not receive it. The API
client is a stand-in that answers the conflict and the re-read (what a live API server would do only
in a race too narrow to arrange); the runtime's pool and profiles are never reached, so they are left
out."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any, cast

import pytest

from issuer.clock import utcnow
from issuer.controller.kubeapi import Conflict
from issuer.controller.registry import IssuerRegistry
from issuer.controller.requests import audit
from issuer.controller.requests import processing as requests
from issuer.controller.requests.request_kinds import CERTIFICATE_REQUESTS
from issuer.controller.runtime import Runtime
from issuer.settings import Settings
from issuer.signer.certificates import PEMBundle

NOW = datetime(2026, 11, 28, tzinfo=UTC)


class _RecreatedMeanwhile:
    def __init__(self, uid: str) -> None:
        self.uid = uid
        self.patches = 0

    async def patch_status(self, path: str, patch: Any, version: str, *, answer: bool = True) -> Any:
        self.patches += 1
        raise Conflict(f"{path} changed")

    async def get(self, path: str) -> dict[str, Any]:
        return {"metadata": {"name": "web", "namespace": "apps", "uid": self.uid, "resourceVersion": "9"}}


@pytest.mark.parametrize(("uid_now", "outcome"), [("uid-2", "replaced"), ("uid-1", "conflicts")])
def test_a_request_created_again_meanwhile_never_gets_the_old_certificate(
    uid_now: str, outcome: str, caplog: pytest.LogCaptureFixture
) -> None:
    client = _RecreatedMeanwhile(uid_now)
    runtime = Runtime(
        settings=Settings(),
        profiles=cast(Any, None),
        pool=cast(Any, None),
        client=cast(Any, client),
        clock=utcnow,
        issuers=IssuerRegistry(),
    )
    body = {"metadata": {"name": "web", "namespace": "apps", "uid": "uid-1", "resourceVersion": "7"}}
    bundle = PEMBundle(b"leaf", b"root", 0xABC, NOW)
    record = audit.Issuance(
        "CertificateRequest", "apps/web", "TrustedIssuer apps/ca", "", "abc", "CN=web", (), "", "l", "id"
    )
    key = ("certificaterequests", "apps", "web")
    with caplog.at_level(logging.INFO, logger="trusted-issuer.audit"):
        published = asyncio.run(
            requests._publish_certificate(runtime, CERTIFICATE_REQUESTS, key, body, bundle, NOW, record)
        )
    assert published is False
    assert f"reason={outcome!r}" in caplog.text
    # Replaced: given up at once. Same request, still conflicting: every attempt used, then retried later.
    assert client.patches == (1 if outcome == "replaced" else requests.PUBLISH_ATTEMPTS)
