"""The pack spec is validated strictly: every bad spec is refused with the pack, the file,
the field and what was expected; packs load independently of each other."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import shutil
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
from driftline.packs import PackError, discover_packs, load_pack
from driftline.packs.spec import TimeSpec
from driftline.packs.timeline import (
    RowClock,
    interval_end,
    interval_start,
    iter_intervals,
    local_dates,
    local_times,
)
from driftline.workspace import open_workspace

from tests.helpers import PACKS, settings_at

FLIGHTS = PACKS / "flights"
NAME = "trial"


@pytest.fixture(autouse=True)
def _keep_loaded_hooks():
    """Loading a pack registers its hooks module in ``sys.modules``; leave it as it was."""
    before = {k: v for k, v in sys.modules.items() if k.startswith("driftline_pack_")}
    yield
    for key in [k for k in sys.modules if k.startswith("driftline_pack_")]:
        del sys.modules[key]
    sys.modules.update(before)


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"


def dump_toml(data: dict) -> str:
    """A tiny TOML writer for pack specs: top-level values, then one table per section
    (values inside a section are written inline)."""
    lines = [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in data.items()
             if not isinstance(v, dict)]
    for section, table in data.items():
        if isinstance(table, dict):
            lines.append(f"[{_toml_key(section)}]")
            lines += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


def make_pack(root: Path, edit=None, hooks=None, name: str = NAME) -> Path:
    """A copy of the flights pack in ``root/name``, named ``name``, with ``edit(spec dict)``
    applied to its spec and ``hooks(source text)`` to its hooks module."""
    directory = root / name
    shutil.copytree(FLIGHTS, directory)
    spec = tomllib.loads((directory / "pack.toml").read_text())
    spec["name"] = name
    if edit:
        edit(spec)
    (directory / "pack.toml").write_text(dump_toml(spec))
    if hooks:
        path = directory / "hooks.py"
        path.write_text(hooks(path.read_text()))
    return directory


def _set(path: str, value):
    """An edit setting the dotted ``path`` of the spec to ``value``."""
    def edit(spec):
        *parents, last = path.split(".")
        node = spec
        for key in parents:
            node = node[key]
        node[last] = value
    return edit


def _append(path: str, value):
    def edit(spec):
        section, key = path.split(".")
        spec[section][key].append(value)
    return edit


def _to_regression(spec):
    spec.update(task="regression", primary_metric="rmse")
    spec["label"]["rule"] = "> 3"
    spec.pop("gate")


def _excluded_feature(spec):
    spec["features"]["numeric"].append("dep_delay")
    spec["features"]["inputs"].append("dep_delay")  # a column feature must be an input


def _categorical_distance(spec):
    spec["features"]["numeric"].remove("distance")
    spec["features"]["categorical"].append("distance")


COLUMNS = sorted(tomllib.loads((FLIGHTS / "pack.toml").read_text())["columns"])
TRAINING_KEYS = ["window_days", "holdout_days", "reference_rows", "num_boost_round",
                 "max_depth", "learning_rate", "subsample", "colsample_bytree",
                 "min_child_weight", "nthread", "device", "require_gpu"]

# (id, spec edit, hooks edit, how it is loaded, file named, field: message)
BAD_SPECS = [
    ("unknown top-level field", _set("colour", "blue"), None, "pack", "pack.toml",
     "field 'colour': unknown field"),
    ("unknown field in [landing]", _set("landing.compression", "zip"), None, "pack",
     "pack.toml", "field 'landing.compression': unknown field"),
    ("wrong type", _set("columns.year.range", "a"), None, "pack", "pack.toml",
     "field 'columns.year.range': Input should be a valid tuple (got 'a')"),
    ("undeclared label column", _set("label.column", "arrival_delay"), None, "pack",
     "pack.toml", f"field 'label.column': 'arrival_delay' is not a declared column "
                  f"(columns: {COLUMNS})"),
    ("feature also excluded", _excluded_feature, None, "pack", "pack.toml",
     "field 'features.numeric': 'dep_delay' is excluded (leakage: known only after "
     "departure); remove it from one of the two; field 'features.inputs': 'dep_delay' is "
     "excluded (leakage: known only after departure)"),
    ("feature neither column nor derived", lambda s: s["features"].pop("derive"), None, "pack",
     "pack.toml", "field 'features': ['sched_dep_hour', 'sched_arr_hour', 'day_of_week'] are "
                  "not declared columns and no derive hook makes them ([features] derive = "
                  "\"function name\")"),
    ("categorical feature of a numeric column", _categorical_distance, None, "pack",
     "pack.toml", "field 'features.categorical': 'distance' is a number column; expected "
                  "category or text"),
    ("binary label rule value", _set("label.rule", "value"), None, "pack", "pack.toml",
     "field 'label.rule': a binary label needs a comparison, e.g. '> 15'"),
    ("regression label rule comparison", _to_regression, None, "pack", "pack.toml",
     "field 'label.rule': a regression label is the value itself: rule = 'value'"),
    ("label rule syntax", _set("label.rule", "late if > 15"), None, "pack", "pack.toml",
     "field 'label': rule 'late if > 15' is not 'value' or '<op> <number or quoted text>' "
     "with op one of > >= < <= == !="),
    ("landing pattern without date", _set("landing.pattern", "flights.csv"), None, "pack",
     "pack.toml", "field 'landing.pattern': must be a file name containing {date} exactly "
                  "once, e.g. 'sales_{date}.csv'"),
    ("gate floor of the other task", _set("gate.floors", {"rmse": 1.0}), None, "pack",
     "pack.toml", "field 'gate.floors': 'rmse' is not a binary metric (expected one of "
                  "['auc', 'logloss', 'accuracy', 'f1', 'precision', 'recall'])"),
    ("hooks with a syntax error", None, lambda text: "def derive(columns:\n", "pack",
     "hooks.py", "field 'hooks': does not import: SyntaxError: '(' was never closed "
                 "(hooks.py, line 1)"),
    ("hooks raising at import", None,
     lambda text: text + "\nraise RuntimeError('no credentials for the source')\n", "pack",
     "hooks.py", "field 'hooks': does not import: RuntimeError: no credentials for the source"),
    ("derive hook missing", _set("features.derive", "derive_all"), None, "pack", "hooks.py",
     "field 'features.derive': hooks.py has no function 'derive_all'"),
    ("derive hook raising", None,
     lambda text: text + "\ndef derive(columns):\n    raise ValueError('boom')\n", "pack",
     "hooks.py", "field 'features.derive': derive() raised on an empty input: ValueError: boom"),
    ("derive hook missing a derived feature", None,
     lambda text: text + "\ndef derive(columns):\n"
                         "    return {'sched_dep_hour': columns['sched_dep_time']}\n",
     "pack", "hooks.py",
     "field 'features.derive': derive() returned no ['sched_arr_hour', 'day_of_week']"),
    ("feature the derive hook does not make", _append("features.numeric", "nonsense"), None,
     "pack", "hooks.py", "field 'features.derive': derive() returned no ['nonsense']"),
    ("installation-wide setting in a pack", _set("serving.router_port", 9000), None,
     "workspace", "pack.toml", "field 'serving.router_port': is installation-wide; set it in "
                               "driftline's configuration, not in a pack"),
    ("mistyped training value", _set("training.window_days", "ninety"), None, "workspace",
     "pack.toml", "field 'training': window_days: Input should be a valid integer, unable to "
                  "parse string as an integer"),
    ("unknown training key", _set("training.window_dayz", 30), None, "workspace", "pack.toml",
     f"field 'training': unknown key(s) ['window_dayz']; expected some of {TRAINING_KEYS}"),
]


@pytest.mark.parametrize(("edit", "hooks", "via", "file", "message"),
                         [case[1:] for case in BAD_SPECS], ids=[case[0] for case in BAD_SPECS])
def test_a_bad_pack_is_refused_naming_pack_file_and_field(tmp_path, edit, hooks, via, file,
                                                          message):
    directory = make_pack(tmp_path / "packs", edit, hooks)
    with pytest.raises(PackError) as caught:
        if via == "pack":
            load_pack(directory)
        else:
            open_workspace(NAME, settings_at(tmp_path / "home", packs_dir=tmp_path / "packs"))
    assert str(caught.value) == f"pack '{NAME}': {directory / file}: {message}"
    assert caught.value.pack == NAME and caught.value.path == str(directory / file)


def test_the_pack_name_must_match_its_directory(tmp_path):
    directory = make_pack(tmp_path, _set("name", "flights2"))
    with pytest.raises(PackError) as caught:
        load_pack(directory)
    assert str(caught.value) == (f"pack 'flights2': {directory / 'pack.toml'}: field 'name': "
                                 f"'flights2' must be the pack directory's name ('{NAME}')")


def test_every_problem_of_a_spec_is_listed(tmp_path):
    def edit(spec):
        spec["label"]["column"] = "arrival_delay"
        spec["gate"]["floors"] = {"rmse": 1.0}
    with pytest.raises(PackError) as caught:
        load_pack(make_pack(tmp_path, edit))
    assert [field for field, _ in caught.value.problems] == ["label.column", "gate.floors"]


def test_the_toml_writer_round_trips_the_shipped_pack(tmp_path, flights_pack):
    pack = load_pack(make_pack(tmp_path))
    assert pack.spec.model_dump(exclude={"name"}) == flights_pack.spec.model_dump(
        exclude={"name"})


def test_discover_returns_the_good_pack_and_names_the_broken_one(tmp_path):
    make_pack(tmp_path, name="good")
    broken = make_pack(tmp_path, _set("label.rule", "late if > 15"), name="broken")
    (tmp_path / "notes").mkdir()  # a directory without a pack.toml is not a pack
    packs, errors = discover_packs(tmp_path)
    assert list(packs) == ["good"] and packs["good"].task == "binary"
    assert list(errors) == ["broken"]
    assert str(errors["broken"]).startswith(
        f"pack 'broken': {broken / 'pack.toml'}: field 'label': rule 'late if > 15'")


def test_the_digest_covers_the_spec_and_the_hooks(tmp_path, flights_pack):
    copy = tmp_path / "flights"
    shutil.copytree(FLIGHTS, copy)
    expected = hashlib.sha256((FLIGHTS / "pack.toml").read_bytes()
                              + (FLIGHTS / "hooks.py").read_bytes()).hexdigest()
    assert load_pack(copy).digest == flights_pack.digest == expected
    hooks = copy / "hooks.py"
    hooks.write_text(hooks.read_text() + "\n# a comment is a change too\n")
    changed = load_pack(copy)
    assert changed.digest != flights_pack.digest
    assert changed.label_digest == flights_pack.label_digest
    assert changed.identity() == {**flights_pack.identity(), "digest": changed.digest}


def test_the_label_digest_changes_with_the_rule_and_not_with_the_features(tmp_path,
                                                                          flights_pack):
    base = load_pack(make_pack(tmp_path / "a"))
    assert base.label_digest == flights_pack.label_digest
    stricter = load_pack(make_pack(tmp_path / "b", _set("label.rule", "> 30")))
    assert stricter.label_digest != base.label_digest

    def fewer_features(spec):
        spec["features"]["numeric"].remove("visib")
    fewer = load_pack(make_pack(tmp_path / "c", fewer_features))
    assert fewer.features == [f for f in base.features if f != "visib"]
    assert fewer.label_digest == base.label_digest and fewer.digest != base.digest
    renamed = load_pack(make_pack(tmp_path / "d", _set("label.name", "delayed")))
    assert renamed.label_digest == base.label_digest  # the response name is not the label


def test_the_flights_pack_as_every_stage_sees_it(flights_pack):
    assert (flights_pack.name, flights_pack.task, flights_pack.metric) == ("flights",
                                                                           "binary", "auc")
    assert flights_pack.derived_features == ["sched_dep_hour", "sched_arr_hour", "day_of_week"]
    assert flights_pack.request_columns[0] == "time_hour"
    assert flights_pack.request_columns[1:] == flights_pack.inputs
    assert not set(flights_pack.inputs) & set(flights_pack.spec.excluded)
    assert "arr_delay" not in flights_pack.inputs
    assert flights_pack.landing_name(dt.date(2013, 1, 9)) == "flights_2013-01-09.csv"


# -- the timeline ---------------------------------------------------------------------
NEW_YORK = TimeSpec(column="t", timezone="America/New_York")


def test_local_times_convert_offsets_and_keep_naive_times_local():
    values = ["2013-01-01T10:00:00Z",        # EST: 05:00
              "2013-07-01T04:30:00+00:00",   # EDT: 00:30
              "2013-01-01T05:00:00-05:00",   # already New York time
              "2013-01-01 23:15:00",         # no offset: local as it is
              "tomorrow", None]
    times = local_times(values, NEW_YORK)
    assert times.iloc[:4].tolist() == [np.datetime64(t) for t in (
        "2013-01-01T05:00", "2013-07-01T00:30", "2013-01-01T05:00", "2013-01-01T23:15")]
    assert times.iloc[4:].isna().all()
    dates = local_dates(["2013-01-02T03:00:00Z", "2013-01-02T05:00:00Z", "x"], NEW_YORK)
    assert dates[:2].tolist() == [dt.date(2013, 1, 1), dt.date(2013, 1, 2)]
    assert np.isnat(dates[2])


def test_local_times_with_a_format():
    spec = TimeSpec(column="t", timezone="Europe/Berlin", format="%d.%m.%Y %H:%M")
    times = local_times(["31.12.2013 23:30", "2013-12-31"], spec)
    assert times.iloc[0] == np.datetime64("2013-12-31T23:30") and times.isna().iloc[1]


def test_a_row_clock_agrees_with_local_dates():
    clock = RowClock(NEW_YORK)
    assert clock.date("2013-01-02T03:00:00Z") == "2013-01-01"
    assert clock.date("2013-01-02T03:00:00") == "2013-01-02"
    with pytest.raises(ValueError):
        clock.date("tomorrow")


def test_interval_ends_and_starts():
    assert interval_end(dt.date(2013, 12, 1), "monthly") == dt.date(2014, 1, 1)
    assert interval_end(dt.date(2012, 2, 1), "monthly") == dt.date(2012, 3, 1)
    assert interval_end(dt.date(2013, 1, 1), "monthly") == dt.date(2013, 2, 1)
    assert interval_end(dt.date(2013, 12, 31), "daily") == dt.date(2014, 1, 1)
    assert interval_start(dt.date(2013, 12, 15), "monthly") == dt.date(2013, 12, 1)
    assert interval_start(dt.date(2013, 12, 15), "daily") == dt.date(2013, 12, 15)


def test_iter_intervals_covers_every_overlapping_interval():
    assert list(iter_intervals(dt.date(2013, 11, 15), dt.date(2014, 2, 1), "monthly")) == [
        dt.date(2013, 11, 1), dt.date(2013, 12, 1), dt.date(2014, 1, 1), dt.date(2014, 2, 1)]
    assert list(iter_intervals(dt.date(2013, 12, 30), dt.date(2014, 1, 2), "daily")) == [
        dt.date(2013, 12, 30), dt.date(2013, 12, 31), dt.date(2014, 1, 1), dt.date(2014, 1, 2)]
    assert list(iter_intervals(dt.date(2014, 1, 2), dt.date(2014, 1, 1), "daily")) == []
