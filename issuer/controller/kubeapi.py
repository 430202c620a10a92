"""A small asynchronous Kubernetes API client for what kopf does not do for us.

kopf watches and patches our own issuers; requests are guests: they are listed and watched here
(``requests/reflector.py``), and their status is written here with a resourceVersion precondition, so a
certificate is published at most once. It is aiohttp (kopf's own HTTP stack) on kopf's event loop:
no thread per call, no client-side throttle.
Credentials come from the kubernetes client's loaders (in-cluster service account or kubeconfig).
"""

from __future__ import annotations

import base64
import json
import os
import ssl
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlencode

import aiohttp
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config

from issuer.errors import RetryableError

#: Where Kubernetes mounts the pod's namespace, beside its service account token.
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def own_namespace() -> str | None:
    """The operator pod's namespace: ``POD_NAMESPACE`` (the downward API), else its service account's;
    None outside a pod."""
    if os.environ.get("POD_NAMESPACE"):
        return os.environ["POD_NAMESPACE"]
    try:
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip() or None
    except OSError:
        return None


class NotFound(Exception):
    """The object is gone (a request deleted while we worked on it is no error)."""


class Conflict(Exception):
    """The object changed since we read it: our precondition failed."""


class Gone(Exception):
    """A watch asked for changes after a resourceVersion the API server no longer keeps (410): list again."""


@dataclass
class Listing:
    """What ``list_pages`` learns of a listing besides its items: the collection's resourceVersion at
    the first page (a watch from it misses no change made after the listing began)."""

    resource_version: str = ""


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
        self._watch_session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> KubeClient:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = self._new_session(self._concurrency, self._timeout)
        return self._session

    def _open_watches(self) -> aiohttp.ClientSession:
        """Watches hold a connection each for minutes: their own pool, so they never take one of the
        ``concurrency`` connections the status writes share."""
        if self._watch_session is None or self._watch_session.closed:
            self._watch_session = self._new_session(0, aiohttp.ClientTimeout())
        return self._watch_session

    def _new_session(self, limit: int, timeout: aiohttp.ClientTimeout) -> aiohttp.ClientSession:
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
        return aiohttp.ClientSession(
            base_url=creds.server + "/",
            headers=headers,
            timeout=timeout,
            connector=aiohttp.TCPConnector(limit=limit, ssl=context),
        )

    async def close(self) -> None:
        for session in (self._session, self._watch_session):
            if session is not None:
                await session.close()
        self._session = self._watch_session = None

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

    async def list_pages(
        self, path: str, limit: int = 500, *, listing: Listing | None = None
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """The items of a collection, a page of at most ``limit`` at a time (the API server's
        ``continue`` tokens), so a large collection is never held whole. Items carry apiVersion and kind
        as listed by the API server (lists leave them out of items; the list's own are copied in).
        ``listing``, if given, gets the collection's resourceVersion from the first page."""
        token = ""
        while True:
            query = {"limit": str(limit), **({"continue": token} if token else {})}
            page = await self.request("GET", f"{path}?{urlencode(query)}")
            if listing is not None and not token:
                listing.resource_version = str((page.get("metadata") or {}).get("resourceVersion") or "")
            kind = str(page.get("kind", "")).removesuffix("List")
            items = page.get("items") or []
            for item in items:
                item.setdefault("apiVersion", page.get("apiVersion"))
                item.setdefault("kind", kind)
            yield items
            token = str((page.get("metadata") or {}).get("continue") or "")
            if not token:
                return

    async def watch(
        self, path: str, resource_version: str, *, timeout_seconds: int = 300
    ) -> AsyncIterator[dict[str, Any]]:
        """The watch events of a collection after ``resource_version``, BOOKMARKs included, as they
        come. The iteration ends when the API server ends the stream (after ``timeout_seconds``) or the
        connection drops: either way the caller watches again from the last version it saw. Raises
        ``Gone`` when that version is no longer kept (a 410 answer or ERROR event), RetryableError
        when the watch cannot start or the server sends another ERROR."""
        query = {
            "watch": "true",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(timeout_seconds),
        }
        # A quiet stream still sends a bookmark now and then; none for this long means it is dead.
        timeout = aiohttp.ClientTimeout(sock_connect=self._timeout.total, sock_read=timeout_seconds + 30)
        try:
            response = await self._open_watches().get(
                f"{path.lstrip('/')}?{urlencode(query)}", timeout=timeout
            )
        except (aiohttp.ClientError, TimeoutError) as err:
            raise RetryableError(f"API watch {path}: {type(err).__name__}", "APIUnavailable") from None
        async with response:
            if response.status == 410:
                raise Gone(path)
            if response.status >= 300:
                text = await response.text()
                raise RetryableError(
                    f"API watch {path} answered {response.status}: {_message(text)}", "APIError"
                )
            rest = b""
            try:
                async for chunk in response.content.iter_any():
                    lines = (rest + chunk).split(b"\n")
                    rest = lines.pop()
                    for line in lines:
                        if line.strip():
                            yield _watch_event(path, line)
            except (aiohttp.ClientError, TimeoutError):
                return  # dropped mid-stream: the caller resumes from the last version it saw
            if rest.strip():
                yield _watch_event(path, rest)

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


def _watch_event(path: str, line: bytes) -> dict[str, Any]:
    event = cast(dict[str, Any], json.loads(line))
    if event.get("type") == "ERROR":
        status = event.get("object") or {}
        if status.get("code") == 410:
            raise Gone(path)
        raise RetryableError(f"API watch {path} failed: {status.get('message', '')}", "APIError")
    return event


def _message(text: str) -> str:
    try:
        return str(json.loads(text).get("message", ""))[:300]
    except (ValueError, AttributeError):
        return text[:300]
