"""Every runbook link of the alert rules, and every relative link of the runbooks, resolves.

Alert links: ``runbook`` of every rule in deploy/prometheus/rules.yml and ``runbook_url`` of
every rule in deploy/alerts/rules.yaml (with ``{runbooks}`` expanded from that file's
``vars``). A link is a path relative to the repository root, optionally with ``#anchor``; it
must name an existing file, and the anchor must be the GitHub slug of a Markdown heading of
that file (lower case, punctuation removed, spaces to hyphens, ``-1``, ``-2`` ... for repeats).

Document links: every relative Markdown link in docs/operations.md and docs/runbooks/*.md must
resolve the same way, relative to the document (``#anchor`` alone: the document itself).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_RULES = ROOT / "deploy" / "prometheus" / "rules.yml"
CITY_RULES = ROOT / "deploy" / "alerts" / "rules.yaml"
DOCS = [ROOT / "docs" / "operations.md", *sorted((ROOT / "docs" / "runbooks").glob("*.md"))]

_FENCE = re.compile(r"^\s*(```|~~~)")
_HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
_LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_INLINE_CODE = re.compile(r"`([^`]*)`")
_EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)


def slug(heading: str) -> str:
    """GitHub's anchor of a heading's text (as github-slugger computes it)."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text only
    text = _INLINE_CODE.sub(r"\1", text)
    text = re.sub(r"<[^>]+>", "", text).lower()
    text = "".join(ch for ch in text if ch.isalnum() or ch in " -_")
    return text.replace(" ", "-")


def _outside_code(text: str) -> list[str]:
    """The lines of a Markdown text that are not inside fenced code blocks."""
    lines: list[str] = []
    fenced = False
    for line in text.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(line)
    return lines


def anchors(markdown: str) -> set[str]:
    """Every heading anchor of a Markdown document, repeats numbered as GitHub does."""
    seen: dict[str, int] = {}
    out: set[str] = set()
    for line in _outside_code(markdown):
        match = _HEADING.match(line)
        if not match:
            continue
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        out.add(base if count == 0 else f"{base}-{count}")
    return out


def problem(link: str, base: Path) -> str | None:
    """Why ``link`` (relative to directory ``base``) does not resolve, or None if it does."""
    path_part, _, anchor = link.partition("#")
    target = (base / path_part).resolve() if path_part else None
    if target is None:
        return "no file named" if not anchor else "an anchor without a document"
    if not target.is_relative_to(ROOT):
        return f"{path_part} points outside the repository"
    if not target.is_file():
        return f"{path_part} does not exist"
    if (
        anchor
        and target.suffix == ".md"
        and anchor not in anchors(target.read_text(encoding="utf-8"))
    ):
        return f"{path_part} has no heading with anchor #{anchor}"
    return None


def _prometheus_links() -> list[tuple[str, str]]:
    groups = yaml.safe_load(PROMETHEUS_RULES.read_text(encoding="utf-8"))["groups"]
    return [
        (rule["alert"], str(rule.get("annotations", {}).get("runbook", "")))
        for group in groups
        for rule in group["rules"]
    ]


def _city_links() -> list[tuple[str, str]]:
    doc: dict[str, Any] = yaml.safe_load(CITY_RULES.read_text(encoding="utf-8"))
    runbooks = str(doc.get("vars", {}).get("runbooks", ""))
    return [
        (
            rule["name"],
            str(rule.get("annotations", {}).get("runbook_url", "")).replace("{runbooks}", runbooks),
        )
        for rule in doc["rules"]
    ]


ALERT_LINKS = [("prometheus", name, link) for name, link in _prometheus_links()] + [
    ("city", name, link) for name, link in _city_links()
]


def _doc_links() -> list[tuple[Path, str]]:
    out: list[tuple[Path, str]] = []
    for doc in DOCS:
        # whole text, so that a link or a code span broken over two lines is still seen;
        # links inside code are examples, not links
        text = _INLINE_CODE.sub("", "\n".join(_outside_code(doc.read_text(encoding="utf-8"))))
        out += [(doc, link) for link in _LINK.findall(text) if not _EXTERNAL.match(link)]
    return out


def test_the_documents_exist() -> None:
    assert DOCS[0].is_file(), "docs/operations.md is missing"
    names = {doc.name for doc in DOCS[1:]}
    for name in (
        "air-quality.md",
        "device-silent.md",
        "flood.md",
        "sensor-quality.md",
        "service-sla.md",
    ):
        assert name in names


def test_every_alert_has_a_runbook_link() -> None:
    assert len(ALERT_LINKS) >= 20
    missing = [f"{kind}:{name}" for kind, name, link in ALERT_LINKS if not link]
    assert not missing, f"alerts without a runbook link: {missing}"


@pytest.mark.parametrize(
    ("kind", "name", "link"), ALERT_LINKS, ids=[f"{k}:{n}" for k, n, _ in ALERT_LINKS]
)
def test_alert_runbook_link_resolves(kind: str, name: str, link: str) -> None:
    assert "{" not in link, f"{kind} alert {name}: unexpanded placeholder in {link!r}"
    assert not _EXTERNAL.match(link), f"{kind} alert {name}: {link!r} is not a repository path"
    why = problem(link, ROOT)
    assert why is None, f"{kind} alert {name}: runbook link {link!r}: {why}"


def test_links_inside_the_runbooks_resolve() -> None:
    links = _doc_links()
    assert links, "the runbooks link nothing: the link pattern is broken"
    broken = [
        f"{doc.relative_to(ROOT)}: {link}: {why}"
        for doc, link in links
        if (why := problem(link if not link.startswith("#") else doc.name + link, doc.parent))
    ]
    assert not broken, "\n".join(broken)


def test_slug_follows_github() -> None:
    assert slug("Readings missing or late") == "readings-missing-or-late"
    assert slug("Worker and alerter state") == "worker-and-alerter-state"
    assert slug("Sizing: `IOC_TOPIC_PARTITIONS`") == "sizing-ioc_topic_partitions"
    assert slug("Mức BĐ I – BĐ III (Long Xuyên)") == "mức-bđ-i--bđ-iii-long-xuyên"
    assert slug("See [the guide](x.md)") == "see-the-guide"
    assert anchors("# A\n## A\n```\n# not a heading\n```\n### A b.\n") == {"a", "a-1", "a-b"}


def test_the_checker_catches_broken_links() -> None:
    assert problem("docs/operations.md#process-down", ROOT) is None
    assert problem("docs/operations.md#no-such-heading", ROOT) is not None
    assert problem("docs/no-such-file.md", ROOT) is not None
    assert problem("../outside.md", ROOT) is not None
