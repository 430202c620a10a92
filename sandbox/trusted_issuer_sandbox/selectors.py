"""Label and field selectors of list and watch requests (``labelSelector=``, ``fieldSelector=``)."""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

_SET_BASED = re.compile(r"^\s*(?P<key>[^\s!=]+)\s+(?P<op>in|notin)\s+\((?P<values>[^)]*)\)\s*$")
_EQUALITY = re.compile(r"^\s*(?P<key>[^\s!=]+)\s*(?P<op>==|=|!=)\s*(?P<value>[^\s,]*)\s*$")
_EXISTENCE = re.compile(r"^\s*(?P<neg>!?)\s*(?P<key>[^\s!=(),]+)\s*$")


def _split_terms(text: str) -> Iterator[str]:
    depth, start = 0, 0
    for index, char in enumerate(text):
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "," and depth == 0:
            yield text[start:index]
            start = index + 1
    if text[start:].strip():
        yield text[start:]


@dataclass(frozen=True)
class Requirement:
    """One term of a selector: ``key op values``, op one of ``= != in notin exists !``."""

    key: str
    op: str
    values: frozenset[str] = frozenset()

    def matches(self, value: str | None) -> bool:
        """Whether a field or label with this value (None when absent) satisfies the term."""
        if self.op == "exists":
            return value is not None
        if self.op == "!":
            return value is None
        if self.op in ("=", "in"):
            return value is not None and value in self.values
        return value is None or value not in self.values


@dataclass(frozen=True)
class LabelSelector:
    """A parsed ``labelSelector``; every requirement must hold."""

    requirements: tuple[Requirement, ...]

    @classmethod
    def parse(cls, text: str) -> LabelSelector:
        """Parse the query-string form; ``ValueError`` with a readable message when malformed."""
        requirements: list[Requirement] = []
        for term in _split_terms(text):
            if match := _SET_BASED.match(term):
                values = frozenset(v.strip() for v in match["values"].split(",") if v.strip())
                requirements.append(Requirement(match["key"], match["op"], values))
            elif match := _EQUALITY.match(term):
                op = "!=" if match["op"] == "!=" else "="
                requirements.append(Requirement(match["key"], op, frozenset({match["value"]})))
            elif match := _EXISTENCE.match(term):
                requirements.append(Requirement(match["key"], "!" if match["neg"] else "exists"))
            else:
                raise ValueError(f"unable to parse requirement: {term.strip()!r}")
        return cls(tuple(requirements))

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether an object with these labels is selected."""
        return all(req.matches(labels.get(req.key)) for req in self.requirements)


def _field_value(obj: Mapping[str, Any], path: str) -> str | None:
    node: Any = obj
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    if isinstance(node, bool):
        return "true" if node else "false"
    return None if node is None else str(node)


@dataclass(frozen=True)
class FieldSelector:
    """A parsed ``fieldSelector`` over the fields a resource makes selectable."""

    requirements: tuple[Requirement, ...]

    @classmethod
    def parse(cls, text: str, selectable: Collection[str]) -> FieldSelector:
        """Parse ``a=b,c!=d``; ``ValueError`` for syntax errors or fields that are not selectable."""
        requirements: list[Requirement] = []
        for term in _split_terms(text):
            match = _EQUALITY.match(term)
            if match is None:
                raise ValueError(f"invalid selector: {text!r}; can't understand {term.strip()!r}")
            if match["key"] not in selectable:
                raise ValueError(f"field label not supported: {match['key']}")
            op = "!=" if match["op"] == "!=" else "="
            requirements.append(Requirement(match["key"], op, frozenset({match["value"]})))
        return cls(tuple(requirements))

    def matches(self, obj: Mapping[str, Any]) -> bool:
        """Whether the object is selected; an absent field selects as the empty string."""
        return all(req.matches(_field_value(obj, req.key) or "") for req in self.requirements)
