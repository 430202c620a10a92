"""The resource types the sandbox serves: built-ins, and whatever CustomResourceDefinitions are loaded."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from trusted_issuer_sandbox.schema import ObjectSchema

#: Verbs of ordinary stored resources, as discovery reports them.
STORED_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
#: Fields every resource can be selected by in a ``fieldSelector``.
COMMON_SELECTABLE_FIELDS = ("metadata.name", "metadata.namespace")


@dataclass(frozen=True)
class PrinterColumn:
    """One ``additionalPrinterColumns`` entry of a CRD version."""

    name: str
    type: str
    json_path: str
    priority: int = 0
    description: str = ""


@dataclass(frozen=True)
class ResourceType:
    """One served group/version/plural and the rules the store applies to its objects."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    singular: str = ""
    subresources: frozenset[str] = frozenset()
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    #: Defined by a CRD: schema-validated, generation-tracked, no strategic merge patch.
    custom: bool = False
    #: False for review resources (SubjectAccessReview) that are answered and never stored.
    stored: bool = True
    #: Metadata.generation is kept (custom resources and CSRs).
    tracks_generation: bool = False
    #: ``spec`` cannot change after creation (CertificateSigningRequest).
    immutable_spec: bool = False
    schema: ObjectSchema | None = field(default=None, compare=False, repr=False)
    printer_columns: tuple[PrinterColumn, ...] = ()
    selectable_fields: tuple[str, ...] = COMMON_SELECTABLE_FIELDS

    @property
    def api_version(self) -> str:
        """``group/version``, or ``v1`` for the core group."""
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_resource(self) -> str:
        """``plural.group`` (or ``plural`` in the core group), as in API error messages."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def key(self) -> tuple[str, str]:
        """Identity across versions: objects of all served versions live under one key."""
        return self.group, self.plural

    @property
    def verbs(self) -> tuple[str, ...]:
        """Verbs as discovery reports them."""
        return STORED_VERBS if self.stored else ("create",)


def _core(plural: str, kind: str, namespaced: bool, **kwargs: Any) -> ResourceType:
    return ResourceType("", "v1", plural, kind, namespaced, singular=kind.lower(), **kwargs)


def _grouped(gv: str, plural: str, kind: str, namespaced: bool, **kwargs: Any) -> ResourceType:
    group, version = gv.split("/")
    return ResourceType(group, version, plural, kind, namespaced, singular=kind.lower(), **kwargs)


NAMESPACES = _core("namespaces", "Namespace", False, subresources=frozenset({"status"}), short_names=("ns",))
EVENTS = _core("events", "Event", True, short_names=("ev",))
CONFIGMAPS = _core("configmaps", "ConfigMap", True, short_names=("cm",))
SECRETS = _core("secrets", "Secret", True)
LEASES = _grouped("coordination.k8s.io/v1", "leases", "Lease", True)
CERTIFICATE_SIGNING_REQUESTS = _grouped(
    "certificates.k8s.io/v1",
    "certificatesigningrequests",
    "CertificateSigningRequest",
    False,
    subresources=frozenset({"status", "approval"}),
    short_names=("csr",),
    tracks_generation=True,
    immutable_spec=True,
    selectable_fields=(*COMMON_SELECTABLE_FIELDS, "spec.signerName"),
)
SUBJECT_ACCESS_REVIEWS = _grouped(
    "authorization.k8s.io/v1", "subjectaccessreviews", "SubjectAccessReview", False, stored=False
)
SELF_SUBJECT_ACCESS_REVIEWS = _grouped(
    "authorization.k8s.io/v1", "selfsubjectaccessreviews", "SelfSubjectAccessReview", False, stored=False
)
CUSTOM_RESOURCE_DEFINITIONS = _grouped(
    "apiextensions.k8s.io/v1",
    "customresourcedefinitions",
    "CustomResourceDefinition",
    False,
    subresources=frozenset({"status"}),
    short_names=("crd", "crds"),
)

BUILTIN_TYPES = (
    NAMESPACES,
    EVENTS,
    CONFIGMAPS,
    SECRETS,
    LEASES,
    CERTIFICATE_SIGNING_REQUESTS,
    SUBJECT_ACCESS_REVIEWS,
    SELF_SUBJECT_ACCESS_REVIEWS,
    CUSTOM_RESOURCE_DEFINITIONS,
)


def types_from_crd(crd: Mapping[str, Any]) -> list[ResourceType]:
    """Every served version of a CustomResourceDefinition (``apiextensions.k8s.io/v1``) as a type."""
    if (
        crd.get("apiVersion") != CUSTOM_RESOURCE_DEFINITIONS.api_version
        or crd.get("kind") != "CustomResourceDefinition"
    ):
        raise ValueError("not an apiextensions.k8s.io/v1 CustomResourceDefinition")
    spec = crd["spec"]
    names = spec["names"]
    types: list[ResourceType] = []
    for version in spec["versions"]:
        if not version.get("served", True):
            continue
        openapi = version.get("schema", {}).get("openAPIV3Schema")
        columns = tuple(
            PrinterColumn(
                name=c["name"],
                type=c.get("type", "string"),
                json_path=c["jsonPath"],
                priority=c.get("priority", 0),
                description=c.get("description", ""),
            )
            for c in version.get("additionalPrinterColumns", ())
        )
        selectable = tuple(s["jsonPath"].lstrip(".") for s in version.get("selectableFields", ()))
        types.append(
            ResourceType(
                group=spec["group"],
                version=version["name"],
                plural=names["plural"],
                kind=names["kind"],
                namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                singular=names.get("singular", names["kind"].lower()),
                subresources=frozenset(version.get("subresources", {})),
                short_names=tuple(names.get("shortNames", ())),
                categories=tuple(names.get("categories", ())),
                custom=True,
                tracks_generation=True,
                schema=ObjectSchema(openapi) if openapi else None,
                printer_columns=columns,
                selectable_fields=(*COMMON_SELECTABLE_FIELDS, *selectable),
            )
        )
    return types


def load_crd_documents(path: Path) -> list[dict[str, Any]]:
    """The CustomResourceDefinitions in a (multi-document) YAML file, skipping other documents."""
    with path.open(encoding="utf-8") as stream:
        documents = list(yaml.safe_load_all(stream))
    return [
        doc for doc in documents if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition"
    ]


class ResourceRegistry:
    """What the sandbox serves; CRDs add and remove entries while it runs. Safe across threads."""

    def __init__(self, types: Iterable[ResourceType] = BUILTIN_TYPES) -> None:
        self._lock = threading.Lock()
        self._types: dict[tuple[str, str, str], ResourceType] = {}
        for rtype in types:
            self.register(rtype)

    def register(self, rtype: ResourceType) -> None:
        """Serve this type (replacing an earlier definition of the same group/version/plural)."""
        with self._lock:
            self._types[(rtype.group, rtype.version, rtype.plural)] = rtype

    def unregister(self, group: str, plural: str) -> None:
        """Stop serving every version of group/plural."""
        with self._lock:
            for key in [k for k in self._types if (k[0], k[2]) == (group, plural)]:
                del self._types[key]

    def find(self, group: str, version: str, plural: str) -> ResourceType | None:
        """The served type, or None."""
        with self._lock:
            return self._types.get((group, version, plural))

    def __iter__(self) -> Iterator[ResourceType]:
        with self._lock:
            return iter(list(self._types.values()))

    def group_versions(self) -> dict[str, list[str]]:
        """Non-core groups and their versions, the preferred (first registered) first."""
        versions: dict[str, list[str]] = {}
        for rtype in self:
            if rtype.group and rtype.version not in versions.setdefault(rtype.group, []):
                versions[rtype.group].append(rtype.version)
        return versions
