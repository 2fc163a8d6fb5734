"""Compiled JSON Schema validators for the CloudEvents envelope and every event type's data.

The schemas live in ``schemas/json/`` (draft 2020-12); :class:`Catalog` loads and compiles
them once (``jsonschema`` validators; references into the shared ``common.json`` are inlined
at compile time, because ``referencing`` resolves a reference again on every use), so checking
one event needs no file access: about 150 µs for envelope and data together, i.e. several
thousand events per second per core, measured with the schemas' own examples.

One deliberate difference from ``jsonschema``'s defaults: an anchored ``pattern``
(``^...$``) must match the whole string. Python's ``re`` lets ``$`` match before a trailing
newline, so ``"my-binh\\n"`` would otherwise pass as a ward slug; ECMA-262 regular
expressions, which JSON Schema specifies, do not allow that. ``format`` is an annotation only
(times are checked by pattern here and parsed by ingest).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any, Final

from jsonschema import Draft202012Validator, ValidationError  # type: ignore[import-untyped]
from jsonschema.exceptions import best_match  # type: ignore[import-untyped]
from jsonschema.validators import extend  # type: ignore[import-untyped]
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from schemas.events import (
    COMMON_SCHEMA,
    ENVELOPE_SCHEMA,
    EVENT_TYPES,
    EventTypeInfo,
    event_types,
    load_schema,
)

MAX_DETAIL: Final = 400

_compiled: dict[str, re.Pattern[str]] = {}


def _whole_string(pattern: str) -> re.Pattern[str]:
    """``pattern`` compiled so that a final unescaped ``$`` means end of string."""
    regex = _compiled.get(pattern)
    if regex is None:
        text = pattern
        if text.endswith("$") and not text.endswith("\\$"):
            text = text[:-1] + r"\Z"
        regex = _compiled[pattern] = re.compile(text)
    return regex


def _pattern(validator: Any, pattern: str, instance: Any, _schema: Any) -> Iterator[Any]:
    if validator.is_type(instance, "string") and not _whole_string(pattern).search(instance):
        yield ValidationError(f"{_short(instance)} does not match {pattern!r}")


_Validator: Any = extend(Draft202012Validator, validators={"pattern": _pattern})


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _describe(error: Any, prefix: str) -> str:
    path = "/".join(str(p) for p in error.absolute_path)
    where = f"{prefix}/{path}" if path else (prefix or "(root)")
    message = str(error.message)
    if len(message) > MAX_DETAIL:
        message = message[: MAX_DETAIL - 3] + "..."
    return f"{where}: {message}"


_ANNOTATIONS: Final = frozenset(("description", "title", "examples", "$comment"))


def inline_refs(node: Any, common: dict[str, Any], base: str) -> Any:
    """``node`` with every ``$ref`` into ``common.json`` replaced by the subschema it names.

    Validation gives the same result as resolving the references, several times faster:
    ``referencing`` looks a reference up again on every use. ``base`` is the ``$id`` of
    ``common.json``; refs of the form ``<base>#/$defs/x`` and, inside common, ``#/$defs/x``
    are inlined. Other references are left as they are.
    """
    if isinstance(node, list):
        return [inline_refs(item, common, base) for item in node]
    if not isinstance(node, dict):
        return node
    out = {k: inline_refs(v, common, base) for k, v in node.items() if k != "$ref"}
    ref = node.get("$ref")
    if not isinstance(ref, str):
        return node if "$ref" in node else out
    target, _, pointer = ref.partition("#")
    if target not in ("", base) or not pointer.startswith("/$defs/"):
        return {**out, "$ref": ref}
    resolved = inline_refs(common["$defs"][pointer.removeprefix("/$defs/")], common, base)
    merged = dict(resolved)
    for key, value in out.items():
        if key in merged and key not in _ANNOTATIONS:
            return {**out, "$ref": ref}  # a real conflict: let the registry resolve it
        merged[key] = value
    return merged


class Catalog:
    """The envelope validator and one data validator per event type, compiled once.

    Thread-safe for reading after construction. Raises ``jsonschema.SchemaError`` at
    construction if a schema file is not valid JSON Schema.
    """

    def __init__(self, schemas: Mapping[str, dict[str, Any]] | None = None) -> None:
        """``schemas`` maps type -> data schema (default: the files of ``schemas/json``)."""
        common = load_schema(COMMON_SCHEMA)
        envelope = load_schema(ENVELOPE_SCHEMA)
        data_schemas = (
            dict(schemas)
            if schemas is not None
            else {t: load_schema(f"{t}.json") for t in EVENT_TYPES}
        )
        resources = [common, envelope, *data_schemas.values()]
        for schema in resources:
            _Validator.check_schema(schema)
        registry: Registry[Any] = Registry().with_resources(
            (s["$id"], Resource.from_contents(s, default_specification=DRAFT202012))
            for s in resources
        )

        def compile_(schema: dict[str, Any]) -> Any:
            return _Validator(inline_refs(schema, common, common["$id"]), registry=registry)

        self._envelope = compile_(envelope)
        self._data = {t: compile_(s) for t, s in data_schemas.items()}
        known = event_types()
        self._info = {t: known[t] for t in data_schemas if t in known}

    @property
    def types(self) -> frozenset[str]:
        """The event types this catalog can validate."""
        return frozenset(self._data)

    def info(self, type_: str) -> EventTypeInfo | None:
        """Subject field, time fields and order rules of ``type_`` (None if unknown)."""
        return self._info.get(type_)

    def envelope_error(self, attributes: Mapping[str, Any]) -> str | None:
        """Why the CloudEvents attributes are invalid, or None if they are valid."""
        error = best_match(self._envelope.iter_errors(attributes))
        return None if error is None else _describe(error, "")

    def data_error(self, type_: str, data: Any) -> str | None:
        """Why ``data`` does not satisfy ``type_``'s schema, or None if it does.

        Raises ``KeyError`` for a type the catalog does not know.
        """
        error = best_match(self._data[type_].iter_errors(data))
        return None if error is None else _describe(error, "data")
