"""API errors of the sandbox, answered as ``v1 Status`` objects with the codes and reasons of kube-apiserver.

Clients branch on the code and the ``reason`` (kopf on 404/409/422, the kubernetes client and kubectl
on the reason), so every error here uses the pair a real API server uses for the same situation.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trusted_issuer_sandbox.resources import ResourceType

#: The reason kube-apiserver gives for each status code that has no more specific reason.
REASONS_BY_CODE = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    409: "Conflict",
    410: "Expired",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


class ApiError(Exception):
    """An answer other than success; ``as_status()`` is the body the client receives."""

    def __init__(
        self,
        code: int,
        message: str,
        *,
        reason: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason or REASONS_BY_CODE.get(code, "Unknown")
        self.details = dict(details or {})

    def as_status(self) -> dict[str, Any]:
        """The ``v1 Status`` object for this error."""
        status: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            status["details"] = self.details
        return status


def _details(resource: ResourceType, name: str, **extra: Any) -> dict[str, Any]:
    details: dict[str, Any] = {"name": name, "kind": resource.plural}
    if resource.group:
        details["group"] = resource.group
    details.update(extra)
    return details


def not_found(resource: ResourceType, name: str) -> ApiError:
    """404 for a missing object."""
    return ApiError(404, f'{resource.group_resource} "{name}" not found', details=_details(resource, name))


def already_exists(resource: ResourceType, name: str) -> ApiError:
    """409 AlreadyExists for a create of a name in use."""
    return ApiError(
        409,
        f'{resource.group_resource} "{name}" already exists',
        reason="AlreadyExists",
        details=_details(resource, name),
    )


def conflict(resource: ResourceType, name: str, why: str) -> ApiError:
    """409 Conflict, e.g. for a stale resourceVersion."""
    return ApiError(
        409,
        f'Operation cannot be fulfilled on {resource.group_resource} "{name}": {why}',
        details=_details(resource, name),
    )


def invalid(resource: ResourceType, name: str, causes: Sequence[tuple[str, str]]) -> ApiError:
    """422 Invalid listing each offending field, as field validation in kube-apiserver does."""
    texts = [f"{field}: {message}" if field else message for field, message in causes]
    summary = texts[0] if len(texts) == 1 else "[" + ", ".join(texts) + "]"
    qualified_kind = f"{resource.kind}.{resource.group}" if resource.group else resource.kind
    return ApiError(
        422,
        f'{qualified_kind} "{name}" is invalid: {summary}',
        details=_details(
            resource,
            name,
            kind=resource.kind,
            causes=[{"reason": "FieldValueInvalid", "message": m, "field": f} for f, m in causes],
        ),
    )


def bad_request(message: str) -> ApiError:
    """400 BadRequest."""
    return ApiError(400, message)


def unprocessable(message: str) -> ApiError:
    """422 for a request that is well-formed but cannot be applied (a failed JSON-patch op)."""
    return ApiError(422, message)


def forbidden(message: str) -> ApiError:
    """403 Forbidden."""
    return ApiError(403, message)


def method_not_allowed(method: str, what: str) -> ApiError:
    """405 for a verb the resource does not serve."""
    return ApiError(405, f"the server does not allow this method on the requested resource ({method} {what})")


def unsupported_media_type(content_type: str, accepted: Sequence[str]) -> ApiError:
    """415 for a body (or patch) type the resource does not accept."""
    return ApiError(
        415,
        f"the body of the request was in an unknown format - accepted media types include: "
        f"{', '.join(accepted)} (got {json.dumps(content_type)})",
    )


def expired(message: str) -> ApiError:
    """410 Expired: a resourceVersion older than the kept history."""
    return ApiError(410, message)


def injected(code: int) -> ApiError:
    """An error answered by fault injection, shaped like the real one with the same code."""
    return ApiError(code, f"injected fault: the sandbox answered {code} on purpose")
