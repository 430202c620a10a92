"""A CRD's ``openAPIV3Schema`` applied the way kube-apiserver applies it: prune, default, validate.

The structural-schema subset CRDs use is close to JSON Schema draft 4; the differences that matter are
translated before ``jsonschema`` sees the schema (``nullable``, ``x-kubernetes-int-or-string``,
``format: byte``). Unknown fields are pruned, not rejected, unless the client asked for strict field
validation. CEL rules (``x-kubernetes-validations``) are not evaluated.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import re
from collections.abc import Mapping
from typing import Any, cast

import jsonschema

_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
_FORMATS = jsonschema.FormatChecker(formats=())
# Every object keeps these whatever its schema says; an embedded resource keeps them too.
_OBJECT_HEADER = frozenset({"apiVersion", "kind", "metadata"})


def _is_base64(value: object) -> bool:
    if isinstance(value, str):
        base64.b64decode(value, validate=True)
    return True


def _is_date_time(value: object) -> bool:
    return not isinstance(value, str) or bool(_DATE_TIME.match(value))


_FORMATS.checks("byte", raises=(binascii.Error, ValueError))(_is_base64)
_FORMATS.checks("date-time")(_is_date_time)


def _to_json_schema(node: Any) -> Any:
    if isinstance(node, list):
        return [_to_json_schema(item) for item in node]
    if not isinstance(node, Mapping):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in ("properties", "patternProperties", "definitions"):
            out[key] = {name: _to_json_schema(sub) for name, sub in value.items()}
        elif key == "description" or key.startswith("x-kubernetes-") or key == "nullable":
            continue
        else:
            out[key] = _to_json_schema(value)
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    return out


def _field_path(path: Any) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _describe(error: jsonschema.ValidationError) -> tuple[str, str]:
    field = _field_path(error.absolute_path)
    value = json.dumps(error.instance)
    if error.validator == "required":
        missing = str(error.message).split("'")[1] if "'" in error.message else ""
        return (f"{field}.{missing}" if field else missing), "Required value"
    if error.validator == "enum":
        allowed = ", ".join(json.dumps(v) for v in cast(list[Any], error.validator_value))
        return field, f"Unsupported value: {value}: supported values: {allowed}"
    if error.validator == "type":
        return field, f"Invalid value: {value}: {field} in body must be of type {error.validator_value}"
    if error.validator == "format":
        return field, f"Invalid value: {value}: {field} in body must be of type {error.validator_value}"
    return field, f"Invalid value: {value}: {error.message}"


class ObjectSchema:
    """The validation, pruning and defaulting rules of one served version of a custom resource."""

    def __init__(self, openapi: Mapping[str, Any]) -> None:
        self.openapi: Mapping[str, Any] = openapi
        converted = _to_json_schema(openapi)
        # ObjectMeta is checked by the store's own rules; the CRD may only say ``type: object`` for it.
        converted.setdefault("properties", {})["metadata"] = {"type": "object"}
        self._validator = jsonschema.Draft4Validator(converted, format_checker=_FORMATS)

    def prune(self, obj: dict[str, Any]) -> list[str]:
        """Drop fields the schema does not declare, in place; return their paths (for warnings)."""
        dropped: list[str] = []
        _prune(obj, self.openapi, "", dropped, keep=_OBJECT_HEADER)
        return dropped

    def apply_defaults(self, obj: dict[str, Any]) -> None:
        """Fill in ``default`` values of absent fields below present parents, in place."""
        _default(obj, self.openapi, root=True)

    def validate(self, obj: Mapping[str, Any]) -> list[tuple[str, str]]:
        """Every violation as (field path, message); empty when the object is valid."""
        errors = sorted(self._validator.iter_errors(obj), key=lambda e: list(map(str, e.absolute_path)))
        return [_describe(error) for error in errors]


def _prune(
    value: Any, schema: Mapping[str, Any], path: str, dropped: list[str], keep: frozenset[str] = frozenset()
) -> None:
    if isinstance(value, dict):
        if schema.get("x-kubernetes-embedded-resource"):
            keep = _OBJECT_HEADER
        properties = schema.get("properties")
        additional = schema.get("additionalProperties")
        preserve = schema.get("x-kubernetes-preserve-unknown-fields", False)
        for key in list(value):
            if key in keep:
                continue  # ObjectMeta and the type header follow their own rules, not the CRD's
            if properties is not None and key in properties:
                _prune(value[key], properties[key], _join(path, key), dropped)
            elif isinstance(additional, Mapping):
                _prune(value[key], additional, _join(path, key), dropped)
            elif not preserve and additional is not True:
                del value[key]
                dropped.append(_join(path, key))
    elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        for index, item in enumerate(value):
            _prune(item, schema["items"], f"{path}[{index}]", dropped)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _default(value: Any, schema: Mapping[str, Any], *, root: bool = False) -> None:
    if isinstance(value, dict):
        for key, sub in schema.get("properties", {}).items():
            if root and key == "metadata":
                continue
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
            if key in value:
                _default(value[key], sub)
        additional = schema.get("additionalProperties")
        if isinstance(additional, Mapping):
            for item in value.values():
                _default(item, additional)
    elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        for item in value:
            _default(item, schema["items"])
