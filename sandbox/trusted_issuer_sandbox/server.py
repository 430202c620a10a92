"""The sandbox API server: kmock's handler, answering as kube-apiserver does where kmock 0.8 does not.

``Sandbox`` is a ``kmock.RawHandler``. From kmock it keeps the request records (``kmock.Request``),
its error accumulation (``strict=True`` fails a test on a sandbox defect), and the DSL of scripted
answers, which take precedence over the sandbox's own::

    sandbox["patch", kmock.resource("cert-manager.io", "v1", "certificaterequests")][:1] << ApiError(409, "…")

It replaces the rest of kmock, for reasons measured with kmock 0.8 and kopf 1.45.2:

- the URL parser (``kmock._internal.parsing``) raises on ``/api/v1/namespaces`` and reads
  ``/api/v1/namespaces/X`` as a namespace scope with no resource: ``routing.parse_api_path``;
- ``KubernetesEmulator`` keeps no resourceVersion, uid, creationTimestamp or generation (so kopf's
  guarded JSON patches fail with 500), has no status-subresource rules, answers create with 200,
  ignores ``resourceVersion``/``timeoutSeconds`` and replays every object as ADDED on each watch, and
  emits no event for ``kmock.objects[...] = ...``: ``store.ObjectStore`` and ``watch``;
- ``KubernetesScaffold``'s discovery is inferred from DSL filters, picks a group's preferred version
  from an unordered set, and shows a kind only if declared: ``discovery`` serves the registry;
- ``kmock.Server`` patches aiohttp's resolver for the whole process and raises when two servers stop
  out of LIFO order (one sandbox per thread does that), and runs aiohttp's test server without handler
  cancellation: here a plain ``aiohttp.web.Server`` that cancels the handler of a client that hung up,
  so its watch ends.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import copy
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import aiohttp
import aiohttp.web
import attrs
import kmock
import yaml
import yarl

from trusted_issuer_sandbox import discovery, errors, patches, tables
from trusted_issuer_sandbox.authorization import AccessPolicy, answer_review, deny_all
from trusted_issuer_sandbox.faults import Fault, FaultInjector
from trusted_issuer_sandbox.kubeconfig import write_kubeconfig
from trusted_issuer_sandbox.resources import (
    NAMESPACES,
    SELF_SUBJECT_ACCESS_REVIEWS,
    ResourceRegistry,
    ResourceType,
    load_crd_documents,
)
from trusted_issuer_sandbox.routing import ApiCall, ApiPath, describe_call, parse_api_path
from trusted_issuer_sandbox.selectors import FieldSelector, LabelSelector
from trusted_issuer_sandbox.store import ObjectKey, ObjectStore
from trusted_issuer_sandbox.watch import WatchOptions, watch_events

logger = logging.getLogger(__name__)

DEFAULT_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
_KMOCK_ACTIONS = {
    "list": kmock.action.LIST,
    "watch": kmock.action.WATCH,
    "get": kmock.action.FETCH,
    "create": kmock.action.CREATE,
    "update": kmock.action.UPDATE,
    "patch": kmock.action.UPDATE,
    "delete": kmock.action.DELETE,
}


def _not_found() -> errors.ApiError:
    return errors.ApiError(404, "the server could not find the requested resource")


def _json_response(body: Any, *, status: int = 200, warnings: Sequence[str] = ()) -> aiohttp.web.Response:
    response = aiohttp.web.Response(
        body=json.dumps(body).encode(), status=status, content_type="application/json"
    )
    for warning in warnings:
        response.headers.add("Warning", f"299 - {json.dumps(warning)}")
    return response


def _decode_body(content_type: str, body: bytes) -> Any:
    if not body:
        return None
    try:
        if content_type == patches.APPLY or content_type.endswith("yaml"):
            return yaml.safe_load(body)
        return json.loads(body)
    except (ValueError, yaml.YAMLError):
        return None


@attrs.define(kw_only=True, eq=False)
class Sandbox(kmock.RawHandler):
    """A local Kubernetes API server for tests, demos and benchmarks (``async with Sandbox() as s``).

    Serves built-in namespaces, events, configmaps, secrets, leases, CSRs, (self)subject access
    reviews and CRDs, plus the CRDs given in ``crds`` (paths of YAML files, or parsed documents).
    """

    crds: Sequence[str | Path | Mapping[str, Any]] = ()
    host: str = "127.0.0.1"
    port: int = 0
    namespaces: Sequence[str] = DEFAULT_NAMESPACES
    #: Seconds between watch bookmarks (kube-apiserver: about a minute; short keeps tests quick).
    bookmark_interval: float = 5.0
    #: Changes kept for watches to resume from; older resourceVersions get 410.
    history: int = 10_000
    #: Calls kept in ``calls``, and kmock request records kept for the DSL (the oldest go first).
    log_limit: int = 10_000
    fault_seed: int = 0
    #: Answers SubjectAccessReviews; replace it (``authorization.allow_rows``) to allow anything.
    access_policy: AccessPolicy = deny_all

    registry: ResourceRegistry = attrs.field(init=False)
    store: ObjectStore = attrs.field(init=False)
    faults: FaultInjector = attrs.field(init=False)
    _calls: collections.deque[ApiCall] = attrs.field(init=False)
    _runner: aiohttp.web.ServerRunner | None = attrs.field(default=None, init=False)
    _client: aiohttp.ClientSession | None = attrs.field(default=None, init=False)
    _stopping: asyncio.Event | None = attrs.field(default=None, init=False)
    _bound_port: int | None = attrs.field(default=None, init=False)
    _received: int = attrs.field(default=0, init=False)

    def __attrs_post_init__(self) -> None:
        self.registry = ResourceRegistry()
        self.store = ObjectStore(self.registry, history=self.history)
        self.faults = FaultInjector(seed=self.fault_seed)
        self._calls = collections.deque(maxlen=self.log_limit)
        for namespace in self.namespaces:
            self.store.create(NAMESPACES, None, {"metadata": {"name": namespace}})
        for crd in self.crds:
            self.load_crds(crd)

    # -- the public surface ------------------------------------------------------------------------

    def load_crds(self, source: str | Path | Mapping[str, Any]) -> list[dict[str, Any]]:
        """Create the CRDs of a YAML file (or one parsed CRD), as ``kubectl apply -f crd.yaml`` would."""
        documents = [dict(source)] if isinstance(source, Mapping) else load_crd_documents(Path(source))
        return [self.put_object(document) for document in documents]

    @property
    def calls(self) -> list[ApiCall]:
        """Every API call received so far (up to ``log_limit``), oldest first."""
        return list(self._calls)

    def clear_calls(self) -> None:
        """Forget the calls received so far (e.g. after a test's setup)."""
        self._calls.clear()

    def find_type(self, api_version: str, kind: str) -> ResourceType:
        """The served type of an apiVersion and kind; ``LookupError`` if none."""
        for rtype in self.registry:
            if (rtype.api_version, rtype.kind) == (api_version, kind):
                return rtype
        raise LookupError(f"the sandbox serves no {kind} in {api_version}")

    def put_object(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Create or replace an object, status included, as a test fixture would; returns it as stored.

        It goes through the same rules as API writes (it is a create or update, then a ``/status``
        update when the type has that subresource), so watchers see ordinary events.
        """
        rtype = self.find_type(body["apiVersion"], body["kind"])
        obj = copy.deepcopy(dict(body))
        meta = obj.setdefault("metadata", {})
        namespace = meta.get("namespace", "default") if rtype.namespaced else None
        meta.pop("resourceVersion", None)
        try:
            stored = self.store.create(rtype, namespace, obj).object
        except errors.ApiError as e:
            if e.reason != "AlreadyExists":
                raise
            stored = self.store.update(rtype, namespace, meta["name"], obj).object
        if "status" in body and "status" in rtype.subresources:
            stored = self.store.update(
                rtype, namespace, meta["name"], {**stored, "status": body["status"]}, subresource="status"
            ).object
        return stored

    def get_object(
        self, api_version: str, kind: str, name: str, namespace: str | None = None
    ) -> dict[str, Any]:
        """The stored object; ``errors.ApiError`` (404) when absent."""
        rtype = self.find_type(api_version, kind)
        return self.store.get(rtype, namespace if rtype.namespaced else None, name)

    @property
    def url(self) -> yarl.URL:
        """The base URL, once serving."""
        if self._bound_port is None:
            raise RuntimeError("the sandbox is not serving yet")
        return yarl.URL(f"http://{self.host}:{self._bound_port}")

    @property
    def bound_port(self) -> int:
        """The TCP port served, once serving."""
        if self._bound_port is None:
            raise RuntimeError("the sandbox is not serving yet")
        return self._bound_port

    def write_kubeconfig(self, path: Path, *, namespace: str = "default") -> Path:
        """Write a kubeconfig for this sandbox (for kubectl, kopf, the kubernetes client)."""
        return write_kubeconfig(path, str(self.url), namespace=namespace)

    def request(self, method: str, url: str, **kwargs: Any) -> Any:
        """kmock's client shortcuts (``await sandbox.get("/api")``), on the sandbox's own HTTP port."""
        if self._client is None:
            raise RuntimeError("the sandbox is not serving yet")
        return self._client.request(method, url, **kwargs)

    # -- serving -----------------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await super().__aenter__()
        self._stopping = asyncio.Event()
        server = aiohttp.web.Server(self, handler_cancellation=True, access_log=None)
        self._runner = aiohttp.web.ServerRunner(server, handle_signals=False, shutdown_timeout=2.0)
        await self._runner.setup()
        site = aiohttp.web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self._bound_port = int(self._runner.addresses[0][1])
        self._client = aiohttp.ClientSession(base_url=str(self.url))
        logger.info("sandbox serving url=%s", self.url)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._stopping is not None:
            self._stopping.set()
        if self._client is not None:
            await self._client.close()
        if self._runner is not None:
            await self._runner.cleanup()
        self._runner = self._client = None
        self._bound_port = None
        await super().__aexit__(exc_type, exc_value, traceback)

    async def __call__(self, raw: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        body = await raw.read()
        params = dict(raw.query)
        call = describe_call(raw.method, raw.path, params)
        self._calls.append(call)
        request = self._record(raw, body, call, params)
        logger.debug("sandbox call verb=%s path=%s", call.verb, call.path)
        try:
            fault = self.faults.decide(call)
            if fault is not None and fault.delay:
                await asyncio.sleep(fault.delay)
            if fault is not None and fault.status is not None:
                raise errors.injected(fault.status)
            if self._payloads:
                with contextlib.suppress(NotImplementedError):  # kmock: no scripted answer matched
                    return await super()._handle(request)
            return await self._serve(request, call, fault)
        except errors.ApiError as e:
            return _json_response(e.as_status(), status=e.code)
        except Exception as e:
            # A defect of the sandbox or of a scripted answer: answer 500, and keep it for kmock's
            # strict mode so the test that provoked it fails on exit.
            logger.exception("sandbox failed verb=%s path=%s", call.verb, call.path)
            if self._errors:
                self._errors[-1].append(e)
            return _json_response(errors.ApiError(500, repr(e)).as_status(), status=500)

    def _record(
        self, raw: aiohttp.web.BaseRequest, body: bytes, call: ApiCall, params: dict[str, str]
    ) -> kmock.Request:
        text = body.decode("utf-8", errors="replace")
        self._received += 1
        request = kmock.Request(
            id=self._received - 1,
            method=raw.method,
            url=raw.url,
            params=params,
            headers=dict(raw.headers),
            cookies=dict(raw.cookies),
            body=body,
            text=text,
            data=_decode_body(raw.content_type, body),
            action=_KMOCK_ACTIONS.get(call.verb) if call.resource else None,
            resource=kmock.resource(call.group, call.version, call.resource) if call.resource else None,
            namespace=call.namespace,
            name=call.name,
            subresource=call.subresource,
            raw_request=raw,
        )
        if len(self._requests) >= self.log_limit:
            del self._requests[: self.log_limit // 2]
        self._requests.append(request)
        return request

    async def _serve(
        self, request: kmock.Request, call: ApiCall, fault: Fault | None
    ) -> aiohttp.web.StreamResponse:
        path = request.url.path
        if path in ("/healthz", "/livez", "/readyz"):
            return aiohttp.web.Response(text="ok")
        if path == "/version":
            return _json_response(discovery.SERVER_VERSION)
        if path == "/openapi/v3":
            return _json_response(discovery.openapi_v3_index(self.registry))
        api_path = parse_api_path(path.removeprefix("/openapi/v3"))
        if path.startswith("/openapi/v3/") and api_path is not None and api_path.version:
            document = discovery.openapi_v3_group_version(self.registry, api_path.group, api_path.version)
            if document is None:
                raise _not_found()
            return _json_response(document)
        if api_path is None or path.startswith("/openapi/"):
            raise _not_found()
        if api_path.plural is None:
            if call.method != "GET":
                raise errors.method_not_allowed(call.method, path)
            return _json_response(self._discover(path, api_path))
        rtype = self.registry.find(api_path.group, api_path.version or "", api_path.plural)
        if rtype is None or (api_path.namespace is not None and not rtype.namespaced):
            raise _not_found()
        if not rtype.stored:
            return self._review(request, rtype, call)
        return await self._serve_resource(request, rtype, api_path, call, fault)

    def _discover(self, path: str, api_path: ApiPath) -> dict[str, Any]:
        document: dict[str, Any] | None
        if path.rstrip("/") == "/api":
            document = discovery.api_versions(f"{self.host}:{self._bound_port}")
        elif path.rstrip("/") == "/apis":
            document = discovery.api_group_list(self.registry)
        elif api_path.version is None:
            document = discovery.api_group(self.registry, api_path.group)
        else:
            document = discovery.api_resource_list(self.registry, api_path.group, api_path.version)
        if document is None:
            raise _not_found()
        return document

    def _review(self, request: kmock.Request, rtype: ResourceType, call: ApiCall) -> aiohttp.web.Response:
        if call.verb != "create":
            raise errors.method_not_allowed(call.method, rtype.group_resource)
        review = self._body(request)
        if not isinstance(review, dict) or review.get("kind") not in (None, rtype.kind):
            raise errors.bad_request(f"expected a {rtype.kind}")
        answered = answer_review(review, self.access_policy, self_review=rtype == SELF_SUBJECT_ACCESS_REVIEWS)
        answered.update(apiVersion=rtype.api_version, kind=rtype.kind)
        return _json_response(answered, status=201)

    async def _serve_resource(
        self,
        request: kmock.Request,
        rtype: ResourceType,
        api_path: ApiPath,
        call: ApiCall,
        fault: Fault | None,
    ) -> aiohttp.web.StreamResponse:
        params = dict(request.params)
        if params.get("dryRun"):
            raise errors.bad_request("the sandbox does not support dryRun")
        namespace, name, subresource = api_path.namespace, api_path.name, api_path.subresource
        strict = params.get("fieldValidation", "").lower() == "strict"
        labels, fields = self._selectors(rtype, params)
        if call.verb == "list":
            if tables.wants_table(request.headers.get("Accept", "")):
                items, version = self.store.select(rtype, namespace, labels, fields)
                return _json_response(tables.table(rtype, items, version))
            return _json_response(self._list(rtype, namespace, labels, fields, params))
        if call.verb == "watch":
            if name is not None:
                labels, fields = self._selectors(rtype, {**params, "fieldSelector": f"metadata.name={name}"})
            return await self._watch(request, rtype, namespace, labels, fields, params, fault)
        if call.verb == "deletecollection":
            deleted = self.store.delete_collection(rtype, namespace, labels, fields)
            return _json_response(
                {
                    "apiVersion": rtype.api_version,
                    "kind": f"{rtype.kind}List",
                    "metadata": {},
                    "items": deleted,
                }
            )
        if call.verb == "create" and name is None:
            written = self.store.create(rtype, namespace, self._body(request), strict=strict)
            return _json_response(written.object, status=201, warnings=written.warnings)
        if name is None:
            raise errors.method_not_allowed(call.method, rtype.group_resource)
        if call.verb == "get":
            obj = self.store.get(rtype, namespace, name)
            if subresource is not None and subresource not in rtype.subresources:
                raise _not_found()
            if tables.wants_table(request.headers.get("Accept", "")):
                return _json_response(tables.table(rtype, [obj], int(obj["metadata"]["resourceVersion"])))
            return _json_response(obj)
        if call.verb == "update":
            written = self.store.update(
                rtype, namespace, name, self._body(request), subresource=subresource, strict=strict
            )
            return _json_response(written.object, warnings=written.warnings)
        if call.verb == "patch":
            content_type = request.headers.get("Content-Type", "").split(";")[0].strip()
            written = self.store.patch(
                rtype,
                namespace,
                name,
                content_type,
                self._body(request),
                subresource=subresource,
                strict=strict,
                field_manager=params.get("fieldManager"),
            )
            return _json_response(
                written.object, status=201 if written.created else 200, warnings=written.warnings
            )
        if call.verb == "delete" and subresource is None:
            options = request.data if isinstance(request.data, dict) else {}
            return _json_response(
                self.store.delete(rtype, namespace, name, preconditions=options.get("preconditions"))
            )
        raise errors.method_not_allowed(call.method, rtype.group_resource)

    def _list(
        self,
        rtype: ResourceType,
        namespace: str | None,
        labels: LabelSelector | None,
        fields: FieldSelector | None,
        params: Mapping[str, str],
    ) -> dict[str, Any]:
        """A list, whole or (with ``limit``) in chunks joined by ``metadata.continue`` tokens."""
        metadata: dict[str, Any] = {}
        if not params.get("limit") and not params.get("continue"):
            items, version = self.store.select(rtype, namespace, labels, fields)
        else:
            try:
                limit = int(params.get("limit") or 500)
                if limit < 1:
                    raise ValueError(limit)
                snapshot, after = (
                    _decode_continue(params["continue"]) if params.get("continue") else (None, None)
                )
            except (ValueError, KeyError, TypeError) as e:
                raise errors.bad_request(f"invalid limit or continue parameter: {e}") from e
            items, version, last, remaining = self.store.select_page(
                rtype, namespace, labels, fields, limit=limit, after=after, snapshot=snapshot
            )
            version = snapshot if snapshot is not None else version
            if last is not None:
                metadata["continue"] = _encode_continue(version, last)
                metadata["remainingItemCount"] = remaining
        return {
            "apiVersion": rtype.api_version,
            "kind": f"{rtype.kind}List",
            "metadata": {"resourceVersion": str(version), **metadata},
            "items": items,
        }

    def _selectors(
        self, rtype: ResourceType, params: Mapping[str, str]
    ) -> tuple[LabelSelector | None, FieldSelector | None]:
        try:
            labels = LabelSelector.parse(params["labelSelector"]) if params.get("labelSelector") else None
            fields = (
                FieldSelector.parse(params["fieldSelector"], rtype.selectable_fields)
                if params.get("fieldSelector")
                else None
            )
        except ValueError as e:
            raise errors.bad_request(str(e)) from e
        return labels, fields

    def _body(self, request: kmock.Request) -> Any:
        content_type = request.headers.get("Content-Type", "")
        if "protobuf" in content_type or "cbor" in content_type:
            # kubectl's typed commands (create namespace, certificate approve, auth can-i) send protobuf
            # and do not fall back to JSON; the manifest commands (apply, patch, delete) send JSON.
            raise errors.ApiError(
                415,
                f"the sandbox reads JSON and YAML bodies only, not {content_type}: use kubectl apply -f, "
                "patch or replace instead of kubectl's typed create/approve commands",
            )
        if request.data is None:
            raise errors.bad_request("the request body is missing or is not valid JSON (or YAML for apply)")
        return request.data

    async def _watch(
        self,
        request: kmock.Request,
        rtype: ResourceType,
        namespace: str | None,
        labels: LabelSelector | None,
        fields: FieldSelector | None,
        params: Mapping[str, str],
        fault: Fault | None,
    ) -> aiohttp.web.StreamResponse:
        raw = request._raw_request
        assert raw is not None and self._stopping is not None
        version = params.get("resourceVersion") or None
        try:
            options = WatchOptions(
                namespace=namespace,
                labels=labels,
                fields=fields,
                resource_version=None if version in (None, "0") else int(str(version)),
                send_initial_events=params.get("sendInitialEvents") == "true",
                bookmarks=params.get("allowWatchBookmarks") == "true",
                timeout=int(params.get("timeoutSeconds") or 1800),  # kube-apiserver takes whole seconds
            )
        except ValueError as e:
            raise errors.bad_request(f"invalid resourceVersion or timeoutSeconds: {e}") from e
        as_table = tables.wants_table(request.headers.get("Accept", ""))
        response = aiohttp.web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(raw)
        events = watch_events(
            self.store, rtype, options, bookmark_interval=self.bookmark_interval, stopping=self._stopping
        )
        drop_after = fault.drop_watch_after if fault is not None else None
        try:
            async with asyncio.timeout(drop_after):
                async for event in events:
                    if as_table and event["type"] in ("ADDED", "MODIFIED", "DELETED"):
                        event = {**event, "object": tables.table(rtype, [event["object"]], None)}
                    await response.write(json.dumps(event).encode() + b"\n")
        except TimeoutError:
            # A dropped connection, not a finished stream: no final chunk, the client sees a cut.
            if raw.transport is not None:
                raw.transport.close()
            return response
        finally:
            await events.aclose()
        await response.write_eof()
        return response


def _encode_continue(version: int, last: ObjectKey) -> str:
    # Opaque to clients, as kube-apiserver's: the listing's version and the last key served.
    return base64.urlsafe_b64encode(json.dumps({"rv": version, "start": list(last)}).encode()).decode()


def _decode_continue(token: str) -> tuple[int, ObjectKey]:
    decoded = json.loads(base64.urlsafe_b64decode(token.encode()))
    start = decoded["start"]
    if not (isinstance(start, list) and len(start) == 4 and all(isinstance(p, str) for p in start)):
        raise ValueError("malformed continue token")
    return int(decoded["rv"]), (start[0], start[1], start[2], start[3])
