"""The pack spec's reference: every field with its type, default and meaning, rendered from
the spec's own models (``python -m driftline.packs.reference > docs/packs.md``), so the
documentation cannot drift from what is validated."""

from __future__ import annotations

import dataclasses
import re
import sys
import typing

from pydantic import BaseModel
from pydantic.dataclasses import is_pydantic_dataclass
from pydantic.fields import FieldInfo

from driftline.packs import spec
from driftline.settings import PACK_SECTIONS, SECTIONS

SPEC_SECTIONS: list[tuple[str, type[BaseModel]]] = [
    ("", spec.PackSpec), ("landing", spec.LandingSpec), ("time", spec.TimeSpec),
    ("columns.<name>", spec.ColumnSpec), ("label", spec.LabelSpec),
    ("features", spec.FeaturesSpec), ("source", spec.SourceSpec),
]
INTRO = """\
# Dataset pack reference

A pack is a directory `packs/<name>/` with `pack.toml` and, only where a declarative rule
cannot say it, `hooks.py` (pure functions named by the spec). `driftline pack check DIR [FILE]`
validates a spec and a landing file against it; `driftline pack init SAMPLE DIR --label COL`
drafts one. Unknown fields, wrong types and names that refer to nothing are refused with the
pack, the file and the field named.

Generated from the spec's models by `python -m driftline.packs.reference` (a test keeps this
file in sync).
"""


def _type(annotation) -> str:
    text = str(annotation).replace("typing.", "").replace("driftline.packs.spec.", "")
    text = re.sub(r"^Annotated\[([\w |]+?), .*\]$", r"\1", text)  # the docstring says the bounds
    text = text.replace("<class '", "").replace("'>", "").replace("NoneType", "None")
    text = text.replace("|", "\\|")
    return text.replace("datetime.date", "date")


def _default(field: FieldInfo | dataclasses.Field) -> str:
    if isinstance(field, FieldInfo):
        if field.is_required():
            return "**required**"
        value = field.get_default(call_default_factory=True)
    elif field.default is not dataclasses.MISSING:
        value = field.default
    elif field.default_factory is not dataclasses.MISSING:
        value = field.default_factory()
    else:
        return "**required**"
    return f"`{value!r}`" if value not in (None, "", [], {}) else "—"


def _clean(text: str | None) -> str:
    return " ".join((text or "").split()).replace("|", "\\|")


def _model_rows(prefix: str, model: type[BaseModel]) -> list[str]:
    rows = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            continue  # its own section below
        if typing.get_origin(annotation) is dict and name == "columns":
            continue
        if name in PACK_SECTIONS:
            continue  # the settings sections below
        key = f"{prefix}.{name}" if prefix else name
        rows.append(f"| `{key}` | {_type(annotation)} | {_default(field)} | "
                    f"{_clean(field.description)} |")
    return rows


def _section_rows(section: str) -> list[str]:
    cls = SECTIONS[section]
    if not is_pydantic_dataclass(cls):
        raise TypeError(f"settings section {section!r} is not a pydantic dataclass: {cls!r}")
    fields = cls.__pydantic_fields__
    rows = []
    for field in dataclasses.fields(cls):
        info = fields[field.name]
        rows.append(f"| `{section}.{field.name}` | {_type(field.type)} | {_default(field)} | "
                    f"{_clean(info.description)} |")
    return rows


def markdown() -> str:
    """The whole reference page."""
    header = ["| field | type | default | meaning |", "|---|---|---|---|"]
    lines = [INTRO, "## Spec fields", "", *header]
    for prefix, model in SPEC_SECTIONS:
        lines += _model_rows(prefix, model)
    lines += ["", "## Settings a pack may set", "",
              ", ".join(f"`[{s}]`" for s in PACK_SECTIONS) + " in a pack "
              "override driftline's defaults; an installation's `[packs.<name>.<section>]` "
              "overrides the pack. `serving.host`, `serving.router_port` and "
              "`serving.backend` are installation-wide.", "", *header]
    for section in PACK_SECTIONS:
        lines += _section_rows(section)
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(markdown())
