"""SubjectAccessReview answers from a policy that the tests set.

A policy is any callable ``(AccessRequest) -> bool``. ``allow_rows`` builds one from a table of
allowed (user, verb, resource, name) rows, where ``"*"`` matches anything and a resource may be
written ``plural``, ``plural.group`` or ``plural/subresource``:

    sandbox.access_policy = allow_rows([("alice", "create", "certificaterequests.cert-manager.io", "*")])

With no policy set, everything is denied: a test that needs an answer must say what it is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from trusted_issuer_sandbox.store import SANDBOX_USER


@dataclass(frozen=True)
class AccessRequest:
    """The question of one (Self)SubjectAccessReview."""

    user: str
    verb: str
    resource: str = ""
    group: str = ""
    subresource: str = ""
    name: str = ""
    namespace: str = ""
    groups: tuple[str, ...] = ()
    uid: str = ""
    extra: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    non_resource_path: str = ""


AccessPolicy = Callable[[AccessRequest], bool]


def deny_all(request: AccessRequest) -> bool:
    """The policy of a sandbox nobody configured."""
    return False


def allow_rows(rows: Iterable[tuple[str, str, str, str]]) -> AccessPolicy:
    """A policy allowing exactly the (user, verb, resource, name) rows; ``"*"`` is a wildcard."""
    table = [tuple(row) for row in rows]

    def policy(request: AccessRequest) -> bool:
        spellings = {request.resource, f"{request.resource}.{request.group}" if request.group else ""}
        if request.subresource:
            spellings |= {f"{s}/{request.subresource}" for s in list(spellings) if s}
        for user, verb, resource, name in table:
            if (
                user in ("*", request.user)
                and verb in ("*", request.verb)
                and (resource == "*" or resource in spellings)
                and name in ("*", request.name)
            ):
                return True
        return False

    return policy


def request_from_review(review: Mapping[str, Any], *, self_review: bool) -> AccessRequest:
    """Read the question out of a SubjectAccessReview (or SelfSubjectAccessReview) body."""
    spec = review.get("spec") or {}
    attributes = spec.get("resourceAttributes") or {}
    non_resource = spec.get("nonResourceAttributes") or {}
    return AccessRequest(
        user=SANDBOX_USER if self_review else str(spec.get("user", "")),
        groups=("system:masters", "system:authenticated") if self_review else tuple(spec.get("groups") or ()),
        uid="" if self_review else str(spec.get("uid", "")),
        extra={k: tuple(v) for k, v in (spec.get("extra") or {}).items()},
        verb=str(attributes.get("verb") or non_resource.get("verb", "")),
        resource=str(attributes.get("resource", "")),
        group=str(attributes.get("group", "")),
        subresource=str(attributes.get("subresource", "")),
        name=str(attributes.get("name", "")),
        namespace=str(attributes.get("namespace", "")),
        non_resource_path=str(non_resource.get("path", "")),
    )


def answer_review(review: Mapping[str, Any], policy: AccessPolicy, *, self_review: bool) -> dict[str, Any]:
    """The review as the API returns it: the request echoed back with ``status.allowed`` filled in."""
    allowed = bool(policy(request_from_review(review, self_review=self_review)))
    answered = dict(review)
    answered["metadata"] = {**(review.get("metadata") or {}), "creationTimestamp": None}
    answered["status"] = {"allowed": allowed}
    if not allowed:
        answered["status"]["reason"] = "denied by the sandbox's access policy"
    return answered
