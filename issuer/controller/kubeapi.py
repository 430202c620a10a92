"""A small asynchronous Kubernetes API client for the writes kopf does not make for us.

kopf watches and patches our own issuers; CertificateRequests are guests, and their status is
written here with a resourceVersion precondition, so a certificate is published at most once. It is
aiohttp (kopf's own HTTP stack) on kopf's event loop: no thread per call, no client-side throttle.
Credentials come from the kubernetes client's loaders (in-cluster service account or kubeconfig).
"""

from __future__ import annotations

import base64
import json
import os
import ssl
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import aiohttp
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config

from issuer.errors import RetryableError


class NotFound(Exception):
    """The object is gone (a request deleted while we worked on it is no error)."""


class Conflict(Exception):
    """The object changed since we read it: our precondition failed."""


@dataclass(frozen=True)
class Credentials:
    server: str
    token: str | None = None
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    verify: bool = True

    @classmethod
    def load(cls, kubeconfig: str | None = None) -> Credentials:
        """In-cluster service account when running in a pod, else the kubeconfig (``KUBECONFIG``)."""
        cfg = k8s_client.Configuration()
        if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
            k8s_config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
        else:
            k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=kubeconfig, client_configuration=cfg
            )
        authorization = cfg.api_key.get("authorization") or cfg.api_key.get("BearerToken")
        token = authorization.split(" ", 1)[-1] if authorization else None
        return cls(
            server=cfg.host.rstrip("/"),
            token=token,
            ca_file=cfg.ssl_ca_cert,
            cert_file=cfg.cert_file,
            key_file=cfg.key_file,
            verify=bool(cfg.verify_ssl),
        )


class KubeClient:
    """A handful of typed calls; every response error becomes NotFound, Conflict or RetryableError."""

    def __init__(self, credentials: Credentials, *, concurrency: int = 64, timeout: float = 30.0) -> None:
        self.credentials = credentials
        self._concurrency = concurrency
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> KubeClient:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            creds = self.credentials
            context: ssl.SSLContext | bool = False
            if creds.server.startswith("https"):
                context = ssl.create_default_context(cafile=creds.ca_file)
                if not creds.verify:
                    context.check_hostname = False
                    context.verify_mode = ssl.CERT_NONE
                if creds.cert_file and creds.key_file:
                    context.load_cert_chain(creds.cert_file, creds.key_file)
            headers = {"Accept": "application/json", "User-Agent": "trusted-issuer"}
            if creds.token:
                headers["Authorization"] = f"Bearer {creds.token}"
            self._session = aiohttp.ClientSession(
                base_url=creds.server + "/",
                headers=headers,
                timeout=self._timeout,
                connector=aiohttp.TCPConnector(limit=self._concurrency, ssl=context),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str = "application/json",
        *,
        answer: bool = True,
    ) -> dict[str, Any]:
        """One call; its JSON answer, or ``{}`` when ``answer`` is false (the answer is then not even
        decoded: a status write's answer is the whole object, which the hot path does not need)."""
        session = self._open()
        data = None if body is None else json.dumps(body)
        headers = {"Content-Type": content_type} if body is not None else {}
        try:
            async with session.request(method, path.lstrip("/"), data=data, headers=headers) as response:
                status = response.status
                text = await response.text() if answer or status >= 300 else ""
        except (aiohttp.ClientError, TimeoutError) as err:
            raise RetryableError(f"API {method} {path}: {type(err).__name__}", "APIUnavailable") from None
        if status == 404:
            raise NotFound(path)
        if status == 409:
            raise Conflict(path)
        if status >= 300:
            raise RetryableError(f"API {method} {path} answered {status}: {_message(text)}", "APIError")
        return json.loads(text) if text and answer else {}

    async def get(self, path: str) -> dict[str, Any]:
        return await self.request("GET", path)

    async def get_secret(self, namespace: str, name: str) -> dict[str, bytes]:
        """The decoded ``data`` of one Secret (NotFound if absent). ``get`` only: the operator never lists
        or watches Secrets, so RBAC can grant it no more than that."""
        body = await self.get(f"/api/v1/namespaces/{namespace}/secrets/{name}")
        return {key: base64.b64decode(value) for key, value in (body.get("data") or {}).items()}

    async def list_pages(self, path: str, limit: int = 500) -> AsyncIterator[list[dict[str, Any]]]:
        """The items of a collection, a page of at most ``limit`` at a time (the API server's
        ``continue`` tokens), so a large collection is never held whole. Items carry apiVersion and kind
        as listed by the API server (lists leave them out of items; the list's own are copied in)."""
        token = ""
        while True:
            query = {"limit": str(limit), **({"continue": token} if token else {})}
            page = await self.request("GET", f"{path}?{urlencode(query)}")
            kind = str(page.get("kind", "")).removesuffix("List")
            items = page.get("items") or []
            for item in items:
                item.setdefault("apiVersion", page.get("apiVersion"))
                item.setdefault("kind", kind)
            yield items
            token = str((page.get("metadata") or {}).get("continue") or "")
            if not token:
                return

    async def patch_status(
        self, path: str, status: Mapping[str, Any], resource_version: str, *, answer: bool = True
    ) -> dict[str, Any]:
        """Merge-patch ``status`` through the object's /status subresource, only if the object is still
        at ``resource_version`` (else Conflict): what makes publishing a certificate happen at most once.
        Returns the updated object, or ``{}`` when ``answer`` is false."""
        body = {"metadata": {"resourceVersion": resource_version}, "status": status}
        return await self.request(
            "PATCH", f"{path}/status", body, "application/merge-patch+json", answer=answer
        )

    async def subject_access_review(self, spec: Mapping[str, Any]) -> bool:
        review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec}
        answer = await self.request("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", review)
        return bool((answer.get("status") or {}).get("allowed"))


def _message(text: str) -> str:
    try:
        return str(json.loads(text).get("message", ""))[:300]
    except (ValueError, AttributeError):
        return text[:300]
