"""The four PATCH body types of the Kubernetes API, applied to plain JSON documents.

- JSON patch (RFC 6902), including ``test``: kopf guards its finalizer edits with a ``test`` of
  ``/metadata/resourceVersion`` and relies on the 422 a failed test gets.
- JSON merge patch (RFC 7386).
- Strategic merge patch: a merge patch that also honours the ``$patch`` / ``$deleteFromPrimitiveList``
  directives and drops ``$setElementOrder`` / ``$retainKeys``; lists are replaced, not merged by key,
  which is what kube-apiserver does for lists without a patch strategy.
- Server-side apply (``application/apply-patch+yaml``): merged like a merge patch, without field
  ownership; enough for ``kubectl apply --server-side`` on objects with one manager.

Every function returns a new document and never mutates its arguments.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any


class PatchError(Exception):
    """The patch cannot be applied to this document (answered as 422)."""


class PatchTestFailed(PatchError):
    """A JSON-patch ``test`` operation did not match."""


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError(f"invalid JSON pointer {path!r}: it must start with '/'")
    return [part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")]


def _index(container: list[Any], segment: str, *, for_insert: bool) -> int:
    if segment == "-" and for_insert:
        return len(container)
    if not segment.isdigit() or (segment != "0" and segment.startswith("0")):
        raise PatchError(f"invalid array index {segment!r}")
    index = int(segment)
    if index > len(container) or (index == len(container) and not for_insert):
        raise PatchError(f"array index {index} out of range")
    return index


def _parent(document: Any, parts: list[str], path: str) -> Any:
    node = document
    for segment in parts[:-1]:
        if isinstance(node, dict) and segment in node:
            node = node[segment]
        elif isinstance(node, list):
            node = node[_index(node, segment, for_insert=False)]
        else:
            raise PatchError(f"doc is missing path: {path!r}")
    return node


def _get(document: Any, path: str) -> Any:
    parts = _pointer(path)
    if not parts:
        return document
    parent = _parent(document, parts, path)
    if isinstance(parent, dict) and parts[-1] in parent:
        return parent[parts[-1]]
    if isinstance(parent, list):
        return parent[_index(parent, parts[-1], for_insert=False)]
    raise PatchError(f"doc is missing path: {path!r}")


def _remove(document: Any, path: str) -> Any:
    parts = _pointer(path)
    if not parts:
        raise PatchError("cannot remove the whole document")
    parent = _parent(document, parts, path)
    if isinstance(parent, dict) and parts[-1] in parent:
        return parent.pop(parts[-1])
    if isinstance(parent, list):
        return parent.pop(_index(parent, parts[-1], for_insert=False))
    raise PatchError(f"unable to remove nonexistent key: {parts[-1]!r} at {path!r}")


def _add(document: Any, path: str, value: Any, *, replace: bool) -> Any:
    parts = _pointer(path)
    if not parts:
        return value
    parent = _parent(document, parts, path)
    if isinstance(parent, dict):
        if replace and parts[-1] not in parent:
            raise PatchError(f"replace operation does not apply: doc is missing key: {path!r}")
        parent[parts[-1]] = value
    elif isinstance(parent, list):
        index = _index(parent, parts[-1], for_insert=not replace)
        if replace:
            parent[index] = value
        else:
            parent.insert(index, value)
    else:
        raise PatchError(f"doc is missing path: {path!r}")
    return document


def apply_json_patch(document: Any, operations: Any) -> Any:
    """Apply an RFC 6902 patch; raise ``PatchTestFailed`` for a failed test, ``PatchError`` otherwise."""
    if not isinstance(operations, list):
        raise PatchError("a JSON patch must be a list of operations")
    result = copy.deepcopy(document)
    for operation in operations:
        if not isinstance(operation, Mapping) or "op" not in operation or "path" not in operation:
            raise PatchError(f"malformed JSON-patch operation: {operation!r}")
        op, path = operation["op"], operation["path"]
        if op in ("add", "replace", "test") and "value" not in operation:
            raise PatchError(f"JSON-patch {op!r} at {path!r} has no value")
        if op == "add":
            result = _add(result, path, copy.deepcopy(operation["value"]), replace=False)
        elif op == "replace":
            result = _add(result, path, copy.deepcopy(operation["value"]), replace=True)
        elif op == "remove":
            _remove(result, path)
        elif op == "test":
            if _get(result, path) != operation["value"]:
                raise PatchTestFailed(f"testing value {path} failed: test failed")
        elif op in ("move", "copy"):
            value = _get(result, operation.get("from", ""))
            if op == "move":
                _remove(result, operation["from"])
            result = _add(result, path, copy.deepcopy(value), replace=False)
        else:
            raise PatchError(f"unexpected JSON-patch operation {op!r}")
    return result


def apply_merge_patch(document: Any, patch: Any) -> Any:
    """Apply an RFC 7386 JSON merge patch: dicts merge, ``null`` deletes, everything else replaces."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    result = dict(copy.deepcopy(document)) if isinstance(document, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = apply_merge_patch(result.get(key), value)
    return result


def apply_strategic_merge_patch(document: Any, patch: Any) -> Any:
    """Apply a strategic merge patch with replace-lists semantics (see the module docstring)."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    directive = patch.get("$patch")
    if directive == "delete":
        return None
    if directive == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    result = dict(copy.deepcopy(document)) if isinstance(document, Mapping) else {}
    for key, value in patch.items():
        if key.startswith(("$setElementOrder/", "$retainKeys", "$patch")):
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            if isinstance(result.get(field), list) and isinstance(value, Sequence):
                result[field] = [item for item in result[field] if item not in value]
            continue
        if value is None:
            result.pop(key, None)
            continue
        merged = apply_strategic_merge_patch(result.get(key), value)
        if merged is None:
            result.pop(key, None)
        else:
            result[key] = merged
    return result


def apply_server_side_apply(document: Any, configuration: Any) -> Any:
    """Merge an applied configuration into the live object (no field ownership, no removals)."""
    if not isinstance(configuration, Mapping) or not isinstance(document, Mapping):
        return copy.deepcopy(configuration)
    result = dict(copy.deepcopy(document))
    for key, value in configuration.items():
        result[key] = (
            apply_server_side_apply(result.get(key), value) if key in result else copy.deepcopy(value)
        )
    return result


JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE = "application/strategic-merge-patch+json"
APPLY = "application/apply-patch+yaml"
#: The PATCH body types, by Content-Type, in the order kube-apiserver lists them.
PATCH_TYPES = (JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE, APPLY)


def apply_patch(patch_type: str, document: Any, patch: Any) -> Any:
    """Apply a patch of one of the ``PATCH_TYPES``; ``PatchError`` when it cannot apply."""
    if patch_type == JSON_PATCH:
        return apply_json_patch(document, patch)
    if patch_type == MERGE_PATCH:
        return apply_merge_patch(document, patch)
    if patch_type == STRATEGIC_MERGE:
        return apply_strategic_merge_patch(document, patch)
    if patch_type == APPLY:
        return apply_server_side_apply(document, patch)
    raise PatchError(f"unknown patch type {patch_type!r}")
