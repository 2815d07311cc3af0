"""MkDocs hook: the configuration reference, generated from ``config.yaml`` and the schema.

``docs/configuration.md`` holds the marker ``<!-- config-reference -->``; at build time it
becomes one table per top-level section of ``config.yaml``: every dotted key, its type
(from the dataclasses in ``trainflow.config.schema``, walked from ``TrainflowConfig``; blank where
the schema has no field, as for an estimator's parameters), its default and, as its
meaning, the comment lines written just above it (and a comment on its own line after the
value). So the reference has one source, ``config.yaml``, and cannot fall behind it.

PyYAML drops comments, so the file's text is read here, by indentation; the values come
from ``yaml.safe_load``. The ``defaults:`` list and the ``hydra:`` section are Hydra's, not
trainflow keys, and are left out.
"""

from __future__ import annotations

import dataclasses
import html
import re
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from mkdocs.exceptions import PluginError

MARKER = "<!-- config-reference -->"
PAGE = "configuration.md"
SKIPPED = ("defaults", "hydra")

_KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z_][\w-]*):(?:[ \t]+(?P<rest>.*))?$")
_INLINE_COMMENT = re.compile(r"\s+#\s?(?P<comment>.*)$")


@dataclass
class Key:
    """One key of ``config.yaml``: its dotted name and the comment written for it."""

    dotted: str
    has_children: bool = False
    # (is_example, text) per comment line: lines indented inside the comment are examples
    comment: list[tuple[bool, str]] = field(default_factory=list)


def parse_keys(text: str) -> list[Key]:
    """Every key of a YAML file of nested mappings, in file order, with the comment lines
    directly above it (a blank line ends a comment) and a trailing comment on its line."""
    keys: list[Key] = []
    stack: list[tuple[int, Key]] = []  # (indent, key) of the enclosing mappings
    pending: list[tuple[bool, str]] = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            pending = []
            continue
        if stripped.startswith("#"):
            body = stripped[1:]
            body = body[1:] if body.startswith(" ") else body
            pending.append((body.startswith("  "), body.strip()))
            continue
        match = _KEY.match(line)
        if not match:  # a list item or a continued value: part of the key above
            pending = []
            continue
        indent = len(match["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        if stack:
            stack[-1][1].has_children = True
        dotted = ".".join([stack[-1][1].dotted, match["key"]]) if stack else match["key"]
        key = Key(dotted, comment=pending)
        pending = []
        rest = match["rest"] or ""
        inline = _INLINE_COMMENT.search(rest) if "#" in rest else None
        if inline and not rest.lstrip().startswith(("'", '"')):
            key.comment.append((False, inline["comment"].strip()))
        keys.append(key)
        stack.append((indent, key))
    return [key for key in keys if key.dotted.split(".")[0] not in SKIPPED]


def schema_types() -> dict[str, Any]:
    """Dotted key -> annotated type, for every field reachable from ``TrainflowConfig``."""
    root = Path(__file__).resolve().parents[2]
    if str(root / "src") not in sys.path:
        sys.path.insert(0, str(root / "src"))
    from trainflow.config.schema import TrainflowConfig

    found: dict[str, Any] = {}

    def walk(cls: type, prefix: str) -> None:
        hints = typing.get_type_hints(cls)
        for item in dataclasses.fields(cls):
            annotation = hints[item.name]
            found[prefix + item.name] = annotation
            inner = [a for a in typing.get_args(annotation) if a is not type(None)] or [annotation]
            if len(inner) == 1 and dataclasses.is_dataclass(inner[0]):
                walk(inner[0], f"{prefix}{item.name}.")

    walk(TrainflowConfig, "")
    return found


def type_name(annotation: Any) -> str:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        names = [type_name(a) for a in args if a is not type(None)]
        return " | ".join(names + (["None"] if type(None) in args else []))
    if origin is not None:
        return f"{getattr(origin, '__name__', str(origin))}[{', '.join(type_name(a) for a in args)}]"
    if annotation is Any:
        return "Any"
    return getattr(annotation, "__name__", str(annotation))


def value_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    dumped = yaml.safe_dump(value, default_flow_style=True, width=10**6).strip()
    return dumped.removesuffix("...").strip()


def lookup(values: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        values = values[part]
    return values


def code(text: str) -> str:
    """A code span (Python-Markdown's tables leave a ``|`` inside one alone)."""
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def prose(text: str) -> str:
    """A comment's words as Markdown: its `code spans` kept, everything else literal."""
    parts = re.split(r"(`[^`]+`)", text)
    out = []
    for number, part in enumerate(parts):
        if number % 2:
            out.append(code(part[1:-1]))
        else:
            part = html.escape(part, quote=False)
            out.append(re.sub(r"([\\*_\[\]|])", r"\\\1", part))
    return "".join(out)


_LABELLED = re.compile(r"^\S+:\s+\S")  # "regression:     random_forest | ..."
_SENTENCE = re.compile(r"^[A-Z][a-z]")  # "The ...", not "MLflow" or "WANDB_..."


def meaning(comment: list[tuple[bool, str]]) -> str:
    """The comment lines as one cell: wrapped lines joined with a space, a line that starts
    a new sentence or a new "label: values" line after the end of the last one with a
    separator, examples (lines indented inside the comment) as code spans."""
    out = ""
    previous: tuple[bool, str] | None = None
    for is_example, text in comment:
        text = re.sub(r"\s{2,}", " ", text) if not is_example else text
        piece = code(text) if is_example else prose(text)
        if previous is None:
            out = piece
        else:
            was_example, before = previous
            ends_open = was_example or before[-1:].isalnum()
            if not is_example and _LABELLED.match(text) and not was_example and _LABELLED.match(before):
                out += "; " + piece
            elif not is_example and ends_open and _SENTENCE.match(text):
                out += ". " + piece
            else:
                out += " " + piece
        previous = (is_example, text)
    return out


def reference(project_dir: Path) -> tuple[str, int]:
    """The Markdown that replaces the marker, and the number of keys in it."""
    text = (project_dir / "config.yaml").read_text()
    values = yaml.safe_load(text)
    keys = parse_keys(text)
    schema = schema_types()
    sections: dict[str, list[Key]] = {}
    for key in keys:
        sections.setdefault(key.dotted.split(".")[0], []).append(key)
    shown = 0
    out = [
        "{count} keys, in `config.yaml`'s order. *Type* is the schema's "
        "(`trainflow.config.schema.TrainflowConfig`; blank where the schema takes any key, such as an "
        "estimator's parameters), *default* the value in `config.yaml` (`???`: set by the data set "
        "or on the command line), *meaning* the comment above the key in `config.yaml`.",
        "",
    ]
    for section, members in sections.items():
        out += [f"### `{section}`", ""]
        if members[0].has_children:  # a section: its comment, if any, above its table
            head, *members = members
            out += [meaning(head.comment), ""] if head.comment else []
        out += ["| key | type | default | meaning |", "| --- | --- | --- | --- |"]
        for key in members:
            shown += 1
            annotation = schema.get(key.dotted)
            kind = code(type_name(annotation)) if annotation is not None else ""
            default = "" if key.has_children else code(value_text(lookup(values, key.dotted)))
            out.append(f"| {code(key.dotted)} | {kind} | {default} | {meaning(key.comment)} |")
        out.append("")
    out[0] = out[0].format(count=shown)
    return "\n".join(out), shown


def on_page_markdown(markdown: str, *, page: Any, config: Any, files: Any) -> str:
    if page.file.src_uri != PAGE:
        return markdown
    if MARKER not in markdown:
        raise PluginError(f"{PAGE} has lost its marker {MARKER!r}: the configuration reference has nowhere to go")
    table, _count = reference(Path(config.config_file_path).resolve().parent)
    return markdown.replace(MARKER, table)
