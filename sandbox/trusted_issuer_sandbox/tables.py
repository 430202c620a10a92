"""Server-side printing (``meta.k8s.io/v1 Table``) for ``kubectl get``, from printer columns.

A CRD's ``additionalPrinterColumns`` are evaluated with the JSONPath subset CRDs use in practice:
``.a.b``, ``.a[0]``, ``.a[*].b`` and ``.a[?(@.type == "Ready")].b``. Date columns are rendered as
ages ("5m"), as kube-apiserver does.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from trusted_issuer_sandbox.resources import (
    CERTIFICATE_SIGNING_REQUESTS,
    EVENTS,
    LEASES,
    NAMESPACES,
    PrinterColumn,
    ResourceType,
)

_TOKEN = re.compile(
    r"\.(?P<field>[A-Za-z0-9_\-]+)"
    r"|\[(?P<index>\d+|\*)\]"
    r"|\[\?\(@\.(?P<key>[A-Za-z0-9_.\-]+)\s*==\s*[\"'](?P<value>[^\"']*)[\"']\)\]"
)
_AGE = PrinterColumn("Age", "date", ".metadata.creationTimestamp")
_BUILTIN_COLUMNS: dict[tuple[str, str], tuple[PrinterColumn, ...]] = {
    NAMESPACES.key: (PrinterColumn("Status", "string", ".status.phase"), _AGE),
    EVENTS.key: (
        PrinterColumn("Last Seen", "date", ".lastTimestamp"),
        PrinterColumn("Type", "string", ".type"),
        PrinterColumn("Reason", "string", ".reason"),
        PrinterColumn("Object", "string", ".involvedObject.name"),
        PrinterColumn("Message", "string", ".message"),
    ),
    LEASES.key: (PrinterColumn("Holder", "string", ".spec.holderIdentity"), _AGE),
    CERTIFICATE_SIGNING_REQUESTS.key: (
        _AGE,
        PrinterColumn("SignerName", "string", ".spec.signerName"),
        PrinterColumn("Requestor", "string", ".spec.username"),
        PrinterColumn("Condition", "string", ".status.conditions[*].type"),
    ),
}


def wants_table(accept: str) -> bool:
    """Whether the client asked for server-side printing (kubectl get does, first in its Accept list)."""
    return "as=Table" in accept.split(",")[0]


def evaluate(obj: Any, path: str) -> list[Any]:
    """All values the JSONPath subset selects in ``obj`` (empty when nothing matches)."""
    nodes: list[Any] = [obj]
    position = 0
    path = path.strip().removeprefix("{").removesuffix("}")
    while position < len(path):
        match = _TOKEN.match(path, position)
        if match is None:
            raise ValueError(f"unsupported JSONPath {path!r} at {path[position:]!r}")
        position = match.end()
        if match["field"] is not None:
            nodes = [n[match["field"]] for n in nodes if isinstance(n, Mapping) and match["field"] in n]
        elif match["index"] == "*":
            nodes = [item for n in nodes if isinstance(n, list) for item in n]
        elif match["index"] is not None:
            index = int(match["index"])
            nodes = [n[index] for n in nodes if isinstance(n, list) and index < len(n)]
        else:
            nodes = [
                item
                for n in nodes
                if isinstance(n, list)
                for item in n
                if evaluate(item, "." + match["key"]) == [match["value"]]
            ]
    return nodes


def _age(timestamp: Any, now: datetime) -> str | None:
    try:
        then = datetime.strptime(str(timestamp), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None
    seconds = max(0, int((now - then).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size * 2 or (unit == "m" and seconds >= size):
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _cell(obj: Mapping[str, Any], column: PrinterColumn, now: datetime) -> Any:
    values = evaluate(obj, column.json_path)
    if not values:
        return None
    if column.type == "date":
        return _age(values[0], now)
    if column.type in ("integer", "number", "boolean") and len(values) == 1:
        return values[0]
    return ",".join(v if isinstance(v, str) else str(v) for v in values)


def columns_of(rtype: ResourceType) -> tuple[PrinterColumn, ...]:
    """The columns after NAME (NAMESPACE is kubectl's own)."""
    return rtype.printer_columns or _BUILTIN_COLUMNS.get(rtype.key, (_AGE,))


def table(
    rtype: ResourceType, items: Sequence[Mapping[str, Any]], resource_version: int | None
) -> dict[str, Any]:
    """A ``Table`` of the objects, each row carrying the object's metadata for kubectl to track."""
    now = datetime.now(UTC)
    columns = columns_of(rtype)
    definitions = [{"name": "Name", "type": "string", "format": "name", "description": "Name", "priority": 0}]
    definitions += [
        {"name": c.name, "type": c.type, "format": "", "description": c.description, "priority": c.priority}
        for c in columns
    ]
    rows = [
        {
            "cells": [item["metadata"]["name"], *(_cell(item, c, now) for c in columns)],
            "object": {
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": item["metadata"],
            },
        }
        for item in items
    ]
    metadata = {"resourceVersion": str(resource_version)} if resource_version is not None else {}
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": definitions,
        "rows": rows,
    }
