"""Objects of the sandbox and the write rules of kube-apiserver that kopf, clients and kubectl rely on.

- One cluster-wide ``resourceVersion`` counter, bumped by every change and stamped on the object;
  writes carrying a stale one get 409. No-op writes change nothing and emit no event.
- uid, creationTimestamp, generation, deletionTimestamp are the server's: clients cannot set them.
  ``generation`` moves only when the spec (everything but metadata, and status when it is a
  subresource) changes, and on the start of a graceful deletion.
- A type with a ``status`` subresource ignores status on create and on the main path; ``/status``
  writes change only status. CSRs' ``/approval`` writes change only the conditions.
- Deletion with finalizers sets deletionTimestamp; the object goes when the last finalizer does.
- CRDs (loaded or created through the API) register their types; deleting one removes its objects.
- Namespaces must exist (and not be terminating) for objects to be created in them.

Every change is kept as a ``WatchEvent`` in a bounded history for watches to resume from; a watch
from before the kept history gets 410 Expired. All methods are thread-safe.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import copy
import re
import secrets
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from trusted_issuer_sandbox import errors, patches
from trusted_issuer_sandbox.resources import (
    CERTIFICATE_SIGNING_REQUESTS,
    CUSTOM_RESOURCE_DEFINITIONS,
    NAMESPACES,
    ResourceRegistry,
    ResourceType,
    types_from_crd,
)
from trusted_issuer_sandbox.selectors import FieldSelector, LabelSelector

#: (group, plural, namespace or "" for cluster-scoped objects, name)
ObjectKey = tuple[str, str, str, str]

_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_GENERATED_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
# ObjectMeta fields serialized with omitempty: an emptied list or map disappears, as after a real round trip.
_OMIT_WHEN_EMPTY = ("finalizers", "labels", "annotations", "ownerReferences", "managedFields")
_SERVER_OWNED_METADATA = (
    "uid",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "generation",
    "resourceVersion",
)
_APPROVAL_CONDITIONS = ("Approved", "Denied")

#: Identity of the only client the sandbox knows; CSRs record it as their requester.
SANDBOX_USER = "sandbox-admin"


@dataclass(frozen=True)
class WatchEvent:
    """One change, as watches stream it; ``object`` is a snapshot that must not be mutated."""

    resource_version: int
    type: str
    key: ObjectKey
    object: Mapping[str, Any]


@dataclass
class Written:
    """The outcome of a write: the object as stored and the warnings to send along."""

    object: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
    created: bool = False


def _now(clock: Callable[[], datetime]) -> str:
    return clock().astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _normalize_metadata(meta: dict[str, Any]) -> None:
    for name in _OMIT_WHEN_EMPTY:
        if name in meta and not meta[name]:
            del meta[name]
    meta.pop("managedFields", None)


def _spec_of(rtype: ResourceType, obj: Mapping[str, Any]) -> dict[str, Any]:
    skipped = {"metadata", "apiVersion", "kind"} | ({"status"} if "status" in rtype.subresources else set())
    return {key: value for key, value in obj.items() if key not in skipped}


def _conditions(obj: Mapping[str, Any]) -> list[dict[str, Any]]:
    status = obj.get("status") or {}
    return list(status.get("conditions") or [])


class ObjectStore:
    """All objects of the sandbox, their change history, and the rules every write goes through."""

    def __init__(
        self,
        registry: ResourceRegistry,
        *,
        history: int = 10_000,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.registry = registry
        self._history = history
        self._clock = clock
        self._lock = threading.RLock()
        self._objects: dict[ObjectKey, dict[str, Any]] = {}
        self._resource_version = 0
        self._events: list[WatchEvent] = []
        self._event_versions: list[int] = []
        self._compacted = 0
        self._listeners: set[Callable[[], None]] = set()

    # -- reading ---------------------------------------------------------------------------------

    @property
    def resource_version(self) -> int:
        """The version of the latest change (0 before any)."""
        return self._resource_version

    def get(self, rtype: ResourceType, namespace: str | None, name: str) -> dict[str, Any]:
        """A copy of the object; 404 ``ApiError`` when absent."""
        with self._lock:
            obj = self._objects.get(self._key(rtype, namespace, name))
            if obj is None:
                raise errors.not_found(rtype, name)
            return self._present(rtype, obj)

    def select(
        self,
        rtype: ResourceType,
        namespace: str | None,
        labels: LabelSelector | None = None,
        fields: FieldSelector | None = None,
    ) -> tuple[list[dict[str, Any]], int]:
        """Copies of the selected objects (all namespaces when None), ordered, and the list's version."""
        with self._lock:
            items = [
                self._present(rtype, obj)
                for key, obj in sorted(self._objects.items())
                if key[:2] == rtype.key
                and (namespace is None or key[2] == namespace)
                and selects(obj, labels, fields)
            ]
            return items, self._resource_version

    def select_page(
        self,
        rtype: ResourceType,
        namespace: str | None,
        labels: LabelSelector | None,
        fields: FieldSelector | None,
        *,
        limit: int,
        after: ObjectKey | None = None,
        snapshot: int | None = None,
    ) -> tuple[list[dict[str, Any]], int, ObjectKey | None, int]:
        """One page of a chunked list (``limit``/``continue``): up to ``limit`` selected objects whose
        keys sort after ``after``; the version; the last key when more remain; how many remain.

        Unlike kube-apiserver, a later page is read from the current objects, not from the first
        page's snapshot: a client that watches from the listing's version sees what changed
        meanwhile as watch events, so it ends in the same state. A ``snapshot`` older than the kept
        history is refused with 410, as kube-apiserver refuses a compacted continue token."""
        with self._lock:
            if snapshot is not None and snapshot < self._compacted:
                raise errors.expired(
                    "the provided continue parameter is too old to display a consistent list result; "
                    "start a new list without it"
                )
            keys = [
                key
                for key, obj in sorted(self._objects.items())
                if key[:2] == rtype.key
                and (namespace is None or key[2] == namespace)
                and (after is None or key > after)
                and selects(obj, labels, fields)
            ]
            page = keys[:limit]
            items = [self._present(rtype, self._objects[key]) for key in page]
            remaining = len(keys) - len(page)
            return items, self._resource_version, (page[-1] if remaining else None), remaining

    def events_since(self, resource_version: int) -> tuple[list[WatchEvent], int]:
        """Every change after ``resource_version`` and the current version; 410 when no longer kept."""
        with self._lock:
            if resource_version < self._compacted:
                raise errors.expired(f"too old resource version: {resource_version} ({self._compacted})")
            start = bisect.bisect_right(self._event_versions, resource_version)
            return self._events[start:], self._resource_version

    def compact(self) -> None:
        """Forget the whole change history, as etcd compaction does: older watches then get 410."""
        with self._lock:
            self._events.clear()
            self._event_versions.clear()
            self._compacted = self._resource_version

    def add_listener(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` (from the writer's thread, so it must be quick and thread-safe) on changes."""
        with self._lock:
            self._listeners.add(listener)

    def remove_listener(self, listener: Callable[[], None]) -> None:
        """Stop calling ``listener``."""
        with self._lock:
            self._listeners.discard(listener)

    # -- writing ---------------------------------------------------------------------------------

    def create(
        self, rtype: ResourceType, namespace: str | None, body: Any, *, strict: bool = False
    ) -> Written:
        """Create an object (POST); 409 AlreadyExists, 404 for a missing namespace, 422 when invalid."""
        if not isinstance(body, dict) or not isinstance(body.get("metadata", {}), dict):
            raise errors.bad_request("the body must be a JSON object with an object in metadata")
        for field_name, expected in (("apiVersion", rtype.api_version), ("kind", rtype.kind)):
            if body.get(field_name) not in (None, expected):
                raise errors.bad_request(
                    f"the {field_name} in the data ({body[field_name]}) does not match the expected "
                    f"{field_name} ({expected})"
                )
        obj: dict[str, Any] = {"apiVersion": rtype.api_version, "kind": rtype.kind}
        obj.update((k, copy.deepcopy(v)) for k, v in body.items() if k not in ("apiVersion", "kind"))
        meta: dict[str, Any] = obj.setdefault("metadata", {})
        if meta.get("resourceVersion"):
            raise errors.bad_request("resourceVersion should not be set on objects to be created")
        with self._lock:
            if rtype.namespaced:
                if namespace is None:
                    raise errors.method_not_allowed("POST", f"cluster-wide {rtype.group_resource}")
                if meta.get("namespace") not in (None, "", namespace):
                    raise errors.bad_request(
                        "the namespace of the provided object does not match the namespace sent on the "
                        "request"
                    )
                meta["namespace"] = namespace
            else:
                meta.pop("namespace", None)
            name = meta.get("name") or self._generate_name(rtype, namespace, meta.get("generateName"))
            meta["name"] = name
            self._check_name(rtype, name)
            if rtype.namespaced:
                self._check_namespace_accepts(rtype, str(namespace), name)
            key = self._key(rtype, namespace, name)
            if key in self._objects:
                raise errors.already_exists(rtype, name)
            for owned in _SERVER_OWNED_METADATA:
                meta.pop(owned, None)
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = _now(self._clock)
            if rtype.tracks_generation:
                meta["generation"] = 1
            if "status" in rtype.subresources:
                obj.pop("status", None)
                if not rtype.custom:
                    obj["status"] = {}  # a Go struct, not a pointer: built-ins always show a status
            self._prepare_builtin_create(rtype, obj)
            _normalize_metadata(meta)
            warnings = self._admit(rtype, obj, strict)
            stored = self._commit(key, obj, "ADDED")
            self._after_commit(rtype, stored)
            return Written(self._present(rtype, stored), warnings, created=True)

    def update(
        self,
        rtype: ResourceType,
        namespace: str | None,
        name: str,
        body: Any,
        *,
        subresource: str | None = None,
        strict: bool = False,
    ) -> Written:
        """Replace an object (PUT) or its subresource; 409 on a stale resourceVersion."""
        if not isinstance(body, dict) or not isinstance(body.get("metadata", {}), dict):
            raise errors.bad_request("the body must be a JSON object with an object in metadata")
        with self._lock:
            key = self._key(rtype, namespace, name)
            old = self._objects.get(key)
            if old is None:
                raise errors.not_found(rtype, name)
            return self._write(rtype, key, old, copy.deepcopy(body), subresource=subresource, strict=strict)

    def patch(
        self,
        rtype: ResourceType,
        namespace: str | None,
        name: str,
        patch_type: str,
        patch: Any,
        *,
        subresource: str | None = None,
        strict: bool = False,
        field_manager: str | None = None,
    ) -> Written:
        """Patch an object or its subresource with one of the ``patches.PATCH_TYPES``.

        A failed JSON-patch ``test`` (or any op that cannot apply) is 422; a resourceVersion set by
        the patch is a precondition (409 when stale); an apply patch creates a missing object.
        """
        if patch_type not in patches.PATCH_TYPES or (rtype.custom and patch_type == patches.STRATEGIC_MERGE):
            accepted = [t for t in patches.PATCH_TYPES if not (rtype.custom and t == patches.STRATEGIC_MERGE)]
            raise errors.unsupported_media_type(patch_type, accepted)
        if patch_type == patches.APPLY and not field_manager:
            raise errors.bad_request("PATCH requests with apply patch type must have fieldManager specified")
        with self._lock:
            key = self._key(rtype, namespace, name)
            old = self._objects.get(key)
            if old is None and patch_type == patches.APPLY and subresource is None:
                if not isinstance(patch, dict):
                    raise errors.bad_request("an apply patch must be an object")
                body = copy.deepcopy(patch)
                body.setdefault("metadata", {}).setdefault("name", name)
                if body["metadata"]["name"] != name:
                    raise errors.bad_request("the name of the object does not match the name on the URL")
                return self.create(rtype, namespace, body, strict=strict)
            if old is None:
                raise errors.not_found(rtype, name)
            try:
                new = patches.apply_patch(patch_type, old, patch)
            except patches.PatchError as e:
                raise errors.unprocessable(str(e)) from e
            if not isinstance(new, dict):
                raise errors.unprocessable("the patched object is not a JSON object")
            return self._write(rtype, key, old, new, subresource=subresource, strict=strict)

    def delete(
        self,
        rtype: ResourceType,
        namespace: str | None,
        name: str,
        *,
        preconditions: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Delete (or start deleting, with finalizers) an object; returns its last state."""
        with self._lock:
            key = self._key(rtype, namespace, name)
            obj = self._objects.get(key)
            if obj is None:
                raise errors.not_found(rtype, name)
            meta = obj["metadata"]
            for field_name in ("uid", "resourceVersion"):
                wanted = (preconditions or {}).get(field_name)
                if wanted is not None and wanted != meta.get(field_name):
                    raise errors.conflict(
                        rtype,
                        name,
                        f"Precondition failed: {field_name} in precondition: {wanted}, "
                        f"{field_name} in object meta: {meta.get(field_name)}",
                    )
            if meta.get("deletionTimestamp"):
                return self._present(rtype, obj)
            inhabited = rtype == NAMESPACES and any(k[2] == name for k in self._objects)
            if not meta.get("finalizers") and not inhabited:
                return self._remove(rtype, key, obj)
            marked = copy.deepcopy(obj)
            marked["metadata"]["deletionTimestamp"] = _now(self._clock)
            marked["metadata"]["deletionGracePeriodSeconds"] = 0
            if rtype.tracks_generation:
                marked["metadata"]["generation"] = meta.get("generation", 1) + 1
            if rtype == NAMESPACES:
                marked.setdefault("status", {})["phase"] = "Terminating"
            stored = self._commit(key, marked, "MODIFIED")
            if rtype == NAMESPACES:
                self._empty_namespace(name)
            return self._present(rtype, stored)

    def delete_collection(
        self,
        rtype: ResourceType,
        namespace: str | None,
        labels: LabelSelector | None = None,
        fields: FieldSelector | None = None,
    ) -> list[dict[str, Any]]:
        """Delete every selected object; returns their last states."""
        with self._lock:
            items, _ = self.select(rtype, namespace, labels, fields)
            return [
                self.delete(rtype, item["metadata"].get("namespace"), item["metadata"]["name"])
                for item in items
            ]

    # -- the rules -------------------------------------------------------------------------------

    def _write(
        self,
        rtype: ResourceType,
        key: ObjectKey,
        old: dict[str, Any],
        new: dict[str, Any],
        *,
        subresource: str | None,
        strict: bool,
    ) -> Written:
        name = key[3]
        new_meta = new.setdefault("metadata", {})
        if not isinstance(new_meta, dict):
            raise errors.bad_request("metadata must be an object")
        stale = new_meta.get("resourceVersion")
        if stale not in (None, "") and stale != old["metadata"]["resourceVersion"]:
            raise errors.conflict(
                rtype,
                name,
                "the object has been modified; please apply your changes to the latest version and try again",
            )
        if new_meta.get("name", name) != name:
            raise errors.bad_request(
                f"the name of the object ({new_meta.get('name')}) does not match the name on the URL ({name})"
            )
        new = self._scope_to_subresource(rtype, old, new, subresource)
        new["apiVersion"], new["kind"] = old["apiVersion"], old["kind"]
        meta, old_meta = new.setdefault("metadata", {}), old["metadata"]
        for owned in ("name", "namespace", *_SERVER_OWNED_METADATA):
            if owned in old_meta:
                meta[owned] = old_meta[owned]
            else:
                meta.pop(owned, None)
        _normalize_metadata(meta)
        if old_meta.get("deletionTimestamp"):
            added = sorted(set(meta.get("finalizers", [])) - set(old_meta.get("finalizers", [])))
            if added:
                raise errors.invalid(
                    rtype,
                    name,
                    [
                        (
                            "metadata.finalizers",
                            f"Forbidden: no new finalizers can be added if the object "
                            f"is being deleted, found new finalizers {added}",
                        )
                    ],
                )
        if rtype.immutable_spec and new.get("spec") != old.get("spec"):
            raise errors.invalid(rtype, name, [("spec", "Forbidden: field is immutable")])
        warnings = self._admit(rtype, new, strict)
        if new == old:
            return Written(self._present(rtype, old), warnings)
        if rtype.tracks_generation and _spec_of(rtype, new) != _spec_of(rtype, old):
            meta["generation"] = old_meta.get("generation", 1) + 1
        if meta.get("deletionTimestamp") and not meta.get("finalizers") and rtype != NAMESPACES:
            return Written(self._remove(rtype, key, new), warnings)
        stored = self._commit(key, new, "MODIFIED")
        self._after_commit(rtype, stored)
        return Written(self._present(rtype, stored), warnings)

    def _scope_to_subresource(
        self, rtype: ResourceType, old: dict[str, Any], new: dict[str, Any], subresource: str | None
    ) -> dict[str, Any]:
        if subresource is None:
            if "status" in rtype.subresources:
                new.pop("status", None)
                if "status" in old:
                    new["status"] = copy.deepcopy(old["status"])
            return new
        if subresource not in rtype.subresources:
            raise errors.ApiError(404, "the server could not find the requested resource")
        scoped = copy.deepcopy(old)
        if subresource == "status":
            if "status" in new:
                scoped["status"] = new["status"]
            else:
                scoped.pop("status", None)
            if "approval" in rtype.subresources:
                kept = [c for c in _conditions(old) if c.get("type") in _APPROVAL_CONDITIONS]
                others = [c for c in _conditions(new) if c.get("type") not in _APPROVAL_CONDITIONS]
                if kept or others:
                    scoped.setdefault("status", {})["conditions"] = kept + others
        elif subresource == "approval":
            scoped.setdefault("status", {})["conditions"] = _conditions(new)
        return scoped

    def _admit(self, rtype: ResourceType, obj: dict[str, Any], strict: bool) -> list[str]:
        """Prune, default and validate; returns warnings, raises 400/422."""
        warnings: list[str] = []
        name = obj["metadata"].get("name", "")
        causes: list[tuple[str, str]] = []
        for map_name in ("labels", "annotations"):
            values = obj["metadata"].get(map_name, {})
            if not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values()):
                causes.append((f"metadata.{map_name}", "Invalid value: values must be strings"))
        if rtype.schema is not None:
            dropped = rtype.schema.prune(obj)
            if dropped and strict:
                unknown = ", ".join(f'unknown field "{path}"' for path in dropped)
                raise errors.bad_request(
                    f'{rtype.kind} in version "{rtype.version}" cannot be handled as a {rtype.kind}: '
                    f"strict decoding error: {unknown}"
                )
            warnings.extend(f'unknown field "{path}"' for path in dropped)
            rtype.schema.apply_defaults(obj)
            causes.extend(rtype.schema.validate(obj))
        if rtype == CERTIFICATE_SIGNING_REQUESTS:
            causes.extend(_csr_causes(obj))
        if rtype == CUSTOM_RESOURCE_DEFINITIONS:
            try:
                types_from_crd(obj)
            except (KeyError, TypeError, ValueError) as e:
                causes.append(("spec", f"Invalid value: {e}"))
        if causes:
            raise errors.invalid(rtype, name, causes)
        return warnings

    def _prepare_builtin_create(self, rtype: ResourceType, obj: dict[str, Any]) -> None:
        if rtype == NAMESPACES:
            obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = obj["metadata"]["name"]
            obj["status"] = {"phase": "Active"}
        elif rtype == CERTIFICATE_SIGNING_REQUESTS:
            spec = obj.setdefault("spec", {})
            spec["username"] = SANDBOX_USER
            spec["groups"] = ["system:masters", "system:authenticated"]
        elif rtype == CUSTOM_RESOURCE_DEFINITIONS and isinstance(obj.get("spec"), dict):
            spec = obj["spec"]
            stored = [v.get("name") for v in spec.get("versions", []) if v.get("storage")]
            obj["status"] = {
                "acceptedNames": copy.deepcopy(spec.get("names", {})),
                "storedVersions": stored,
                "conditions": [
                    {
                        "type": kind,
                        "status": "True",
                        "reason": reason,
                        "message": message,
                        "lastTransitionTime": _now(self._clock),
                    }
                    for kind, reason, message in (
                        ("NamesAccepted", "NoConflicts", "no conflicts found"),
                        ("Established", "InitialNamesAccepted", "the initial names have been accepted"),
                    )
                ],
            }

    def _after_commit(self, rtype: ResourceType, obj: Mapping[str, Any]) -> None:
        if rtype == NAMESPACES:
            self._reap_namespace(obj["metadata"]["name"])
        if rtype == CUSTOM_RESOURCE_DEFINITIONS:
            spec = obj["spec"]
            self.registry.unregister(spec["group"], spec["names"]["plural"])
            for served in types_from_crd(obj):
                self.registry.register(served)

    def _remove(self, rtype: ResourceType, key: ObjectKey, obj: dict[str, Any]) -> dict[str, Any]:
        stored = self._commit(key, obj, "DELETED")
        if rtype == CUSTOM_RESOURCE_DEFINITIONS:
            group, plural = obj["spec"]["group"], obj["spec"]["names"]["plural"]
            for inner_key in [k for k in self._objects if k[:2] == (group, plural)]:
                self._commit(inner_key, self._objects[inner_key], "DELETED")
            self.registry.unregister(group, plural)
        if rtype.namespaced:
            self._reap_namespace(key[2])
        return self._present(rtype, stored)

    def _empty_namespace(self, namespace: str) -> None:
        for key in [k for k in self._objects if k[2] == namespace]:
            rtype = next((t for t in self.registry if t.key == key[:2]), None)
            obj = self._objects.get(key)
            if rtype is not None and obj is not None and not obj["metadata"].get("deletionTimestamp"):
                self.delete(rtype, namespace, key[3])
        self._reap_namespace(namespace)

    def _reap_namespace(self, namespace: str) -> None:
        ns_key: ObjectKey = ("", "namespaces", "", namespace)
        ns = self._objects.get(ns_key)
        if ns is None or not ns["metadata"].get("deletionTimestamp") or ns["metadata"].get("finalizers"):
            return
        if not any(k[2] == namespace for k in self._objects):
            self._commit(ns_key, ns, "DELETED")

    def _commit(self, key: ObjectKey, obj: dict[str, Any], event_type: str) -> dict[str, Any]:
        self._resource_version += 1
        obj = copy.deepcopy(obj)
        obj["metadata"]["resourceVersion"] = str(self._resource_version)
        if event_type == "DELETED":
            self._objects.pop(key, None)
        else:
            self._objects[key] = obj
        self._events.append(WatchEvent(self._resource_version, event_type, key, obj))
        self._event_versions.append(self._resource_version)
        if len(self._events) > self._history:
            cut = len(self._events) - self._history
            self._compacted = self._event_versions[cut - 1]
            del self._events[:cut], self._event_versions[:cut]
        for listener in list(self._listeners):
            listener()
        return obj

    def _check_name(self, rtype: ResourceType, name: str) -> None:
        pattern, limit = (_LABEL, 63) if rtype == NAMESPACES else (_SUBDOMAIN, 253)
        if not isinstance(name, str) or len(name) > limit or not pattern.match(name):
            raise errors.invalid(
                rtype,
                str(name),
                [
                    (
                        "metadata.name",
                        f'Invalid value: "{name}": a lowercase RFC 1123 name must consist of '
                        "lower case alphanumeric characters, '-' or '.', and must start and end with an "
                        "alphanumeric character",
                    )
                ],
            )

    def _check_namespace_accepts(self, rtype: ResourceType, namespace: str, name: str) -> None:
        ns = self._objects.get(("", "namespaces", "", namespace))
        if ns is None:
            raise errors.not_found(NAMESPACES, namespace)
        if ns["metadata"].get("deletionTimestamp"):
            raise errors.forbidden(
                f'{rtype.group_resource} "{name}" is forbidden: unable to create new content in namespace '
                f"{namespace} because it is being terminated"
            )

    def _generate_name(self, rtype: ResourceType, namespace: str | None, prefix: Any) -> str:
        if not prefix:
            raise errors.invalid(
                rtype, "", [("metadata.name", "Required value: name or generateName is required")]
            )
        while True:
            name = str(prefix) + "".join(secrets.choice(_GENERATED_SUFFIX_ALPHABET) for _ in range(5))
            if self._key(rtype, namespace, name) not in self._objects:
                return name

    def _key(self, rtype: ResourceType, namespace: str | None, name: str) -> ObjectKey:
        return rtype.group, rtype.plural, (namespace or "") if rtype.namespaced else "", name

    def _present(self, rtype: ResourceType, obj: Mapping[str, Any]) -> dict[str, Any]:
        presented = copy.deepcopy(dict(obj))
        presented["apiVersion"] = rtype.api_version
        return presented


def selects(obj: Mapping[str, Any], labels: LabelSelector | None, fields: FieldSelector | None) -> bool:
    """Whether an object passes both selectors (None selects everything)."""
    meta = obj.get("metadata", {})
    return (labels is None or labels.matches(meta.get("labels", {}))) and (
        fields is None or fields.matches(obj)
    )


def _csr_causes(obj: Mapping[str, Any]) -> list[tuple[str, str]]:
    spec = obj.get("spec") or {}
    causes: list[tuple[str, str]] = []
    if not spec.get("signerName"):
        causes.append(("spec.signerName", "Required value"))
    try:
        base64.b64decode(spec.get("request") or "", validate=True)
    except (binascii.Error, ValueError):
        causes.append(("spec.request", "Invalid value: must be base64-encoded PEM"))
    if not spec.get("request"):
        causes.append(("spec.request", "Required value"))
    types = {c.get("type") for c in _conditions(obj)}
    if {"Approved", "Denied"} <= types:
        causes.append(
            ("status.conditions", "Invalid value: Approved and Denied conditions are mutually exclusive")
        )
    if (obj.get("status") or {}).get("certificate") and "Approved" not in types:
        causes.append(
            ("status.certificate", "Forbidden: a certificate may only be set on an approved request")
        )
    return causes
