"""Discovery documents (legacy, unaggregated), ``/version``, and the slice of OpenAPI v3 kubectl reads.

kubectl asks ``/openapi/v3`` whether a kind's PATCH takes ``fieldValidation``; when the answer is
yes it leaves validation to the server instead of demanding a client-side OpenAPI v2 schema.
That is all the OpenAPI served here says: paths and parameters, no schemas.
"""

from __future__ import annotations

import re
from typing import Any

from trusted_issuer_sandbox.resources import ResourceRegistry, ResourceType

SERVER_VERSION = {
    "major": "1",
    "minor": "34",
    "gitVersion": "v1.34.0+sandbox",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2025-01-01T00:00:00Z",
    "goVersion": "go1.24.0",
    "compiler": "gc",
    "platform": "linux/amd64",
}

_VERSION = re.compile(r"^v(\d+)(?:(alpha|beta)(\d+))?$")


def _version_priority(version: str) -> tuple[int, int, int, str]:
    # kube-apiserver's order: GA before beta before alpha, higher numbers first, others last by name.
    match = _VERSION.match(version)
    if match is None:
        return (3, 0, 0, version)
    stability = {None: 0, "beta": 1, "alpha": 2}[match[2]]
    return (stability, -int(match[1]), -int(match[3] or 0), version)


def _group_document(group: str, versions: list[str]) -> dict[str, Any]:
    ordered = sorted(versions, key=_version_priority)
    return {
        "name": group,
        "versions": [{"groupVersion": f"{group}/{v}", "version": v} for v in ordered],
        "preferredVersion": {"groupVersion": f"{group}/{ordered[0]}", "version": ordered[0]},
    }


def api_versions(server_address: str) -> dict[str, Any]:
    """``GET /api``."""
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    }


def api_group_list(registry: ResourceRegistry) -> dict[str, Any]:
    """``GET /apis``."""
    groups = registry.group_versions()
    return {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [_group_document(group, versions) for group, versions in sorted(groups.items())],
    }


def api_group(registry: ResourceRegistry, group: str) -> dict[str, Any] | None:
    """``GET /apis/<group>``, or None for an unknown group."""
    versions = registry.group_versions().get(group)
    if not versions:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group_document(group, versions)}


def _subresource_verbs(subresource: str) -> list[str]:
    return ["get", "patch", "update"] if subresource in ("status", "approval") else ["create"]


def api_resource_list(registry: ResourceRegistry, group: str, version: str) -> dict[str, Any] | None:
    """``GET /api/v1`` or ``GET /apis/<group>/<version>``, or None when nothing is served there."""
    types = sorted((t for t in registry if (t.group, t.version) == (group, version)), key=lambda t: t.plural)
    if not types:
        return None
    resources: list[dict[str, Any]] = []
    for rtype in types:
        entry: dict[str, Any] = {
            "name": rtype.plural,
            "singularName": rtype.singular,
            "namespaced": rtype.namespaced,
            "kind": rtype.kind,
            "verbs": list(rtype.verbs),
        }
        if rtype.short_names:
            entry["shortNames"] = list(rtype.short_names)
        if rtype.categories:
            entry["categories"] = list(rtype.categories)
        resources.append(entry)
        for subresource in sorted(rtype.subresources):
            resources.append(
                {
                    "name": f"{rtype.plural}/{subresource}",
                    "singularName": "",
                    "namespaced": rtype.namespaced,
                    "kind": rtype.kind,
                    "verbs": _subresource_verbs(subresource),
                }
            )
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group}/{version}" if group else version,
        "resources": resources,
    }


def _gv_path(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


def openapi_v3_index(registry: ResourceRegistry) -> dict[str, Any]:
    """``GET /openapi/v3``: where each group-version's document is."""
    gvs = sorted({(t.group, t.version) for t in registry})
    return {
        "paths": {
            _gv_path(g, v): {"serverRelativeURL": f"/openapi/v3/{_gv_path(g, v)}?hash=sandbox"}
            for g, v in gvs
        }
    }


def _patch_operation(rtype: ResourceType) -> dict[str, Any]:
    return {
        "operationId": f"patch{rtype.kind}",
        "parameters": [
            {"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": True}},
            {"name": "fieldManager", "in": "query", "schema": {"type": "string", "uniqueItems": True}},
        ],
        "responses": {"200": {"description": "OK"}},
        "x-kubernetes-action": "patch",
        "x-kubernetes-group-version-kind": {
            "group": rtype.group,
            "version": rtype.version,
            "kind": rtype.kind,
        },
    }


def openapi_v3_group_version(registry: ResourceRegistry, group: str, version: str) -> dict[str, Any] | None:
    """``GET /openapi/v3/apis/<group>/<version>``: the object paths and their PATCH parameters."""
    types = [t for t in registry if (t.group, t.version) == (group, version) and t.stored]
    if not types:
        return None
    paths: dict[str, Any] = {}
    for rtype in types:
        scope = "/namespaces/{namespace}" if rtype.namespaced else ""
        paths[f"/{_gv_path(group, version)}{scope}/{rtype.plural}/{{name}}"] = {
            "patch": _patch_operation(rtype)
        }
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": SERVER_VERSION["gitVersion"]},
        "paths": paths,
        "components": {"schemas": {}},
    }
