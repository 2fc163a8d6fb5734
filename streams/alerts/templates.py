"""Annotation templates: ``str.format`` fields filled from an alert's labels and value.

A template is text with ``{name}`` or ``{name:spec}`` fields, for example
``"PM2.5 tại {ward}: {value:.1f} µg/m³"``. Names are labels, the computed fields the machine
provides (``value``, ``severity``, ``severity_vi``, ``alertname``, ``level_vi``, ``overdue``...)
and the rule file's ``vars``.

Safety and guarantees:

* :func:`check_template` (run when rules load) refuses attribute access (``{value.__class__}``),
  indexing (``{labels[0]}``), positional fields (``{}``, ``{0}``), nested fields inside a format
  spec and unbalanced braces, so a template can read values and never reach code.
* :func:`render` fills fields from a plain mapping with ``str.format_map``-style formatting,
  one field at a time: a missing name is rendered visibly as ``<missing:name>`` and a format
  spec that does not fit the value (``{ward:.1f}``) as ``<bad-format:name>``. It never raises
  for a template that passed :func:`check_template`.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from typing import Final

_FORMATTER: Final = string.Formatter()


class TemplateError(ValueError):
    """A template uses syntax that is not allowed or cannot be parsed."""


def _fields(text: str) -> list[tuple[str, str | None, str | None, str | None]]:
    try:
        return list(_FORMATTER.parse(text))
    except ValueError as exc:
        raise TemplateError(f"bad template {text!r}: {exc}") from None


def check_template(text: str) -> frozenset[str]:
    """Validate a template and return the field names it uses; :class:`TemplateError` if bad."""
    names: set[str] = set()
    for _literal, name, spec, conversion in _fields(text):
        if name is None:
            continue
        if not name or name.isdigit():
            raise TemplateError(f"bad template {text!r}: fields must be named, like {{ward}}")
        if not name.isidentifier():
            raise TemplateError(
                f"bad template {text!r}: field {{{name}}} may not use '.', '[' or other "
                "operators; write a plain name like {ward}"
            )
        if spec and ("{" in spec or "}" in spec):
            raise TemplateError(f"bad template {text!r}: nested fields in a format spec")
        if conversion is not None:
            raise TemplateError(f"bad template {text!r}: conversions like !r are not allowed")
        names.add(name)
    return frozenset(names)


def render(text: str, context: Mapping[str, object]) -> str:
    """Fill a template's fields from ``context`` (see the module docstring for guarantees)."""
    try:
        parsed = _fields(text)
    except TemplateError:
        return text
    out: list[str] = []
    for literal, name, spec, _conversion in parsed:
        out.append(literal)
        if name is None:
            continue
        if name not in context:
            out.append(f"<missing:{name}>")
            continue
        try:
            out.append(format(context[name], spec or ""))
        except (ValueError, TypeError):
            out.append(f"<bad-format:{name}>")
    return "".join(out)
