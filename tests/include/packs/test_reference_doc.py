"""docs/packs.md is what ``python -m driftline.packs.reference`` renders from the spec's
models, and lists every field the spec and the pack-settable sections accept."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

from driftline.packs import spec
from driftline.settings import PACK_SECTIONS, SECTIONS

from tests.helpers import ROOT

DOC = ROOT / "docs" / "packs.md"


def test_the_committed_reference_is_the_generated_one():
    generated = subprocess.run([sys.executable, "-m", "driftline.packs.reference"],
                               capture_output=True, text=True, check=True, timeout=60).stdout
    assert DOC.read_text() == generated, (
        "docs/packs.md is stale: python -m driftline.packs.reference > docs/packs.md")


def test_every_accepted_field_has_a_row():
    rows = {line.split("|")[1].strip().strip("`") for line in DOC.read_text().splitlines()
            if line.startswith("| `")}
    for prefix, model in [("", spec.PackSpec), ("landing", spec.LandingSpec),
                          ("time", spec.TimeSpec), ("label", spec.LabelSpec),
                          ("features", spec.FeaturesSpec), ("columns.<name>", spec.ColumnSpec),
                          ("source", spec.SourceSpec)]:
        for name in model.model_fields:
            key = f"{prefix}.{name}" if prefix else name
            # a table field (landing, columns, ...) is documented by the rows beneath it
            assert key in rows or any(r.startswith(f"{key}.") for r in rows), key
    for section in PACK_SECTIONS:
        for field in dataclasses.fields(SECTIONS[section]):
            assert f"{section}.{field.name}" in rows, (section, field.name)
