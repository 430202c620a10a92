"""Which token keys one issuer may touch: derived every time from what a tenant cannot write.

An issuer's status records the keys the operator found (``keyHandle``, ``nextKey``, ``retiredKeys``,
``wrappingKey``), but whoever may ``patch`` the ``/status`` subresource can rewrite it, and
namespace-admin roles often carry that right. So status is a cache, never an authority: the keys an
issuer may sign with, rotate to, retire, destroy or import into are the ones whose labels derive from
its kind, namespace, name and uid (plus, from its spec, an ``adopt`` label inside its scope). Every
handle read from status is checked against that before it is used; the token is then searched by that
label *and* the recorded CKA_ID, and the public key found must hash to the recorded fingerprint, so a
handle that passes names a key of this issuer or nothing at all.

A handle that fails the check is never used, for signing or for destruction: the issuer goes
Ready=False with reason ``KeyOutOfScope`` and the message names the field.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from issuer import api
from issuer.controller.issuers.spec import IssuerSpec
from issuer.controller.registry import describe, issuer_ref
from issuer.errors import IssuerError, TrustedIssuerError
from issuer.signer.api import KeyHandle, WrappingKey

_Parsed = TypeVar("_Parsed")
REASON_KEY_OUT_OF_SCOPE = "KeyOutOfScope"
REASON_KEY_HANDLE_INVALID = "KeyHandleInvalid"
#: The suffix of a rotation generation's key label; generation 0 is the bare base label.
_GENERATION = re.compile(r"/k([1-9][0-9]{0,8})")


def key_scope(kind: str, namespace: str | None) -> str:
    """The label prefix of every key owned by issuers of one scope; adoption stays inside it."""
    return f"ti:ns/{namespace}/" if kind == api.ISSUER_KIND else "ti:cluster/"


def owned_key_label(kind: str, namespace: str | None, name: str, uid: str) -> str:
    """A label no other issuer can produce: scope, name (shortened with a hash if long) and uid."""
    if len(name) > 48:
        name = name[:37] + "~" + hashlib.sha256(name.encode()).hexdigest()[:10]
    return f"{key_scope(kind, namespace)}{name}/{uid.replace('-', '')[:8]}"


def rotation_key_label(base_label: str, generation: int) -> str:
    """The label of the key of one rotation generation; generation 0 is the issuer's first key."""
    return base_label if generation == 0 else f"{base_label}/k{generation}"


def wrapping_key_label(base_label: str) -> str:
    """The one-time wrapping key of an import, labelled inside the issuer's own scope."""
    return f"{base_label}/wrap"


@dataclass(frozen=True)
class KeyScope:
    """The keys of one issuer: its own generated labels (with rotation and wrap suffixes), or the one
    key its spec adopts. Built from metadata and spec only."""

    issuer: str
    #: ``key_scope``: the label prefix shared by every issuer of this namespace (or of the cluster).
    prefix: str
    base_label: str
    adopt_label: str | None = None

    @classmethod
    def of(cls, kind: str, meta: Mapping[str, Any], spec: IssuerSpec) -> KeyScope:
        namespace = meta.get("namespace") if kind == api.ISSUER_KIND else None
        name = str(meta.get("name", ""))
        base = owned_key_label(kind, namespace, name, str(meta.get("uid", "")))
        return cls(
            describe(issuer_ref(kind, namespace, name)), key_scope(kind, namespace), base, spec.adopt_label
        )

    def check_adoptable(self) -> str:
        """The label of the key the spec adopts, if it lies inside this issuer's scope."""
        label = self.adopt_label or ""
        if not label.startswith(self.prefix):
            raise IssuerError(
                f"key {label!r} is outside this issuer's scope: only keys labelled {self.prefix}… "
                "can be adopted",
                REASON_KEY_OUT_OF_SCOPE,
            )
        return label

    def generation_of(self, label: str) -> int | None:
        """The rotation generation a signing-key label stands for, or None if it is not this issuer's."""
        if self.adopt_label is not None:
            return 0 if label == self.adopt_label else None
        if label == self.base_label:
            return 0
        if label.startswith(self.base_label):
            suffix = _GENERATION.fullmatch(label[len(self.base_label) :])
            if suffix:
                return int(suffix.group(1))
        return None

    def signing_key(self, data: Any, field: str) -> tuple[KeyHandle, int]:
        """The handle recorded at status ``field`` and the generation its label stands for; raises
        ``KeyOutOfScope`` if the label is not one of this issuer's keys."""
        handle = _parse(KeyHandle.from_status, data, field)
        generation = self.generation_of(handle.key_label)
        if generation is None:
            raise self._out_of_scope(field, handle.key_label, self._signing_labels())
        return handle, generation

    def wrapping_key(self, data: Any, field: str) -> WrappingKey:
        """The wrapping key recorded at status ``field``, if it is this issuer's own."""
        if not isinstance(data, Mapping):
            raise _invalid(field, "it is not an object")
        handle = _parse(KeyHandle.from_status, data.get("keyHandle"), f"{field}.keyHandle")
        expected = wrapping_key_label(self.base_label)
        if handle.key_label != expected:
            raise self._out_of_scope(field, handle.key_label, repr(expected))
        wrapping = _parse(WrappingKey.from_status, data, field)
        if wrapping.sha256 != handle.public_key_sha256:
            raise _invalid(field, "its publicKeySHA256 is not its key handle's")
        return wrapping

    def check_status(self, status: Mapping[str, Any]) -> None:
        """Refuse a status that names any key this issuer may not touch, before anything is used.

        Also refused: a next key whose recorded generation is not its label's, and a retired key that
        is the key signing now or the next one (a retiredKeyPolicy of Destroy would destroy it)."""
        live: set[str] = set()
        if status.get("keyHandle"):
            live.add(self.signing_key(status["keyHandle"], "keyHandle")[0].key_label)
        upcoming = status.get("nextKey")
        if upcoming:
            if not isinstance(upcoming, Mapping):
                raise _invalid("nextKey", "it is not an object")
            handle, generation = self.signing_key(upcoming.get("keyHandle"), "nextKey.keyHandle")
            if str(upcoming.get("generation")) != str(generation):
                raise IssuerError(
                    f"{self.issuer}: status.nextKey.generation {upcoming.get('generation')!r} is not the "
                    f"generation of its key {handle.key_label!r} ({generation}); status is a cache, never "
                    "an authority: nothing was signed or destroyed",
                    REASON_KEY_OUT_OF_SCOPE,
                )
            live.add(handle.key_label)
        for field, data in _retired(status):
            handle, _ = self.signing_key(data, field)
            if handle.key_label in live:
                raise IssuerError(
                    f"{self.issuer}: status.{field} names key {handle.key_label!r}, which is in use "
                    "(signing or next); status is a cache, never an authority: nothing was destroyed",
                    REASON_KEY_OUT_OF_SCOPE,
                )
        if status.get("wrappingKey"):
            self.wrapping_key(status["wrappingKey"], "wrappingKey")

    def destroyable_keys(self, status: Mapping[str, Any]) -> Iterator[KeyHandle | TrustedIssuerError]:
        """Every key status records as this issuer's and not yet destroyed (signing, next, retired), each
        checked on its own: a key out of scope comes back as the error to report, never as a handle."""
        recorded: list[tuple[str, Any]] = []
        if status.get("keyHandle"):
            recorded.append(("keyHandle", status["keyHandle"]))
        upcoming = status.get("nextKey")
        if isinstance(upcoming, Mapping) and upcoming.get("keyHandle"):
            recorded.append(("nextKey.keyHandle", upcoming["keyHandle"]))
        recorded.extend(_retired(status, skip_destroyed=True))
        for field, data in recorded:
            try:
                yield self.signing_key(data, field)[0]
            except TrustedIssuerError as err:
                yield err

    def _signing_labels(self) -> str:
        if self.adopt_label is not None:
            return f"{self.adopt_label!r} (spec.key.adopt)"
        return f"{self.base_label!r} or {self.base_label + '/k<generation>'!r}"

    def _out_of_scope(self, field: str, label: str, allowed: str) -> IssuerError:
        return IssuerError(
            f"{self.issuer}: status.{field} names key {label!r}, which is not this issuer's (its keys: "
            f"{allowed}); status is a cache, never an authority, so the key is not used and nothing was "
            f"signed or destroyed: remove status.{field.split('.')[0].split('[')[0]} or recreate the issuer",
            REASON_KEY_OUT_OF_SCOPE,
        )


def _retired(status: Mapping[str, Any], *, skip_destroyed: bool = False) -> Iterator[tuple[str, Any]]:
    records = status.get("retiredKeys") or []
    if not isinstance(records, list):
        raise _invalid("retiredKeys", "it is not a list")
    for index, record in enumerate(records):
        field = f"retiredKeys[{index}].keyHandle"
        if not isinstance(record, Mapping):
            raise _invalid(field, "it is not an object")
        if skip_destroyed and record.get("destroyedAt"):
            continue
        yield field, record.get("keyHandle")


def _parse(parse: Callable[[dict[str, Any]], _Parsed], data: Any, field: str) -> _Parsed:
    if not isinstance(data, Mapping):
        raise _invalid(field, "it is not an object")
    try:
        return parse(dict(data))
    except TrustedIssuerError as err:
        raise _invalid(field, err.message) from None
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise _invalid(field, f"{type(err).__name__}") from None


def _invalid(field: str, why: str) -> IssuerError:
    return IssuerError(f"status.{field} is not a key handle: {why}", REASON_KEY_HANDLE_INVALID)
