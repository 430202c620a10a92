"""What an HTTP request asks of the API: the parsed path, and the call as an RBAC rule would name it.

kmock's own path parser treats every ``/namespaces/X`` as a namespace scope, so it fails on
``/api/v1/namespaces`` and reads ``/api/v1/namespaces/X`` as a namespace with no resource;
this parser knows that ``namespaces`` is also a resource.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

# Subresources of a Namespace object, told apart from namespaced resources of the same path shape.
_NAMESPACE_SUBRESOURCES = frozenset({"status", "finalize"})


@dataclass(frozen=True)
class ApiPath:
    """A path under ``/api`` or ``/apis``; ``plural`` is None for discovery paths."""

    group: str
    version: str | None = None
    plural: str | None = None
    namespace: str | None = None
    name: str | None = None
    subresource: str | None = None


def parse_api_path(path: str) -> ApiPath | None:
    """Parse ``/api/v1/...`` or ``/apis/group/version/...``; None for any other path."""
    parts = [part for part in path.split("/") if part]
    if parts[:1] == ["api"]:
        group, rest = "", parts[1:]
    elif parts[:1] == ["apis"] and len(parts) >= 2:
        group, rest = parts[1], parts[2:]
    elif parts == ["apis"]:
        return ApiPath(group="")
    else:
        return None
    if not rest:
        return ApiPath(group=group)
    version, rest = rest[0], rest[1:]
    namespace: str | None = None
    is_namespace_object = rest[:1] == ["namespaces"] and (
        len(rest) <= 2 or (len(rest) == 3 and rest[2] in _NAMESPACE_SUBRESOURCES)
    )
    if rest[:1] == ["namespaces"] and not is_namespace_object:
        namespace, rest = rest[1], rest[2:]
    if not rest:
        return ApiPath(group=group, version=version, namespace=namespace)
    return ApiPath(
        group=group,
        version=version,
        plural=rest[0],
        namespace=namespace,
        name=rest[1] if len(rest) > 1 else None,
        subresource="/".join(rest[2:]) or None,
    )


def verb_of(method: str, path: ApiPath | None, params: Mapping[str, str]) -> str:
    """The Kubernetes verb (RBAC's name for it), or the lower-cased HTTP method off the resource paths."""
    method = method.upper()
    if path is None or path.plural is None:
        return method.lower()
    if method == "GET":
        if params.get("watch") in ("true", "1"):
            return "watch"
        return "get" if path.name is not None else "list"
    if method == "DELETE" and path.name is None:
        return "deletecollection"
    return {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(
        method, method.lower()
    )


@dataclass(frozen=True)
class ApiCall:
    """One request the sandbox received, in the terms of an RBAC rule."""

    method: str
    path: str
    verb: str
    group: str | None = None
    version: str | None = None
    resource: str | None = None
    subresource: str | None = None
    namespace: str | None = None
    name: str | None = None

    @property
    def rule(self) -> tuple[str, str, str]:
        """(apiGroup, resource[/subresource], verb): one line of the RBAC a caller needs."""
        resource = f"{self.resource}/{self.subresource}" if self.subresource else (self.resource or "")
        return self.group or "", resource, self.verb


def describe_call(method: str, path: str, params: Mapping[str, str]) -> ApiCall:
    """The ``ApiCall`` for an HTTP method, URL path and query."""
    api_path = parse_api_path(path)
    verb = verb_of(method, api_path, params)
    if api_path is None or api_path.plural is None:
        return ApiCall(method=method.upper(), path=path, verb=verb)
    return ApiCall(
        method=method.upper(),
        path=path,
        verb=verb,
        group=api_path.group,
        version=api_path.version,
        resource=api_path.plural,
        subresource=api_path.subresource,
        namespace=api_path.namespace,
        name=api_path.name,
    )
