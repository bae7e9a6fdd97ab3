"""A loaded dataset pack: its validated spec, its hooks, and what every stage derives from
them (features, inputs, label, landing files), with errors that name the pack, the file and
the field."""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib.util
import inspect
import json
import sys
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np
import pydantic

from driftline.packs.spec import (
    HIGHER_IS_BETTER,
    LABEL_RULE,
    PackSpec,
    reference_errors,
)
from driftline.packs.timeline import interval_end, local_dates

if TYPE_CHECKING:
    import pandas as pd

SPEC_FILE = "pack.toml"
DEFAULT_HOOKS = "hooks.py"
TEXT_TYPES = ("category", "text", "datetime")


class PackError(ValueError):
    """A pack that cannot be used: names the pack, the file, the field and what was expected.

    :param problems: ``(field, message)`` pairs.
    """

    def __init__(self, pack: str, path: Path | str, problems: list[tuple[str, str]]):
        self.pack = pack
        self.path = str(path)
        self.problems = problems
        lines = [f"field {f!r}: {m}" if f else m for f, m in problems]
        super().__init__(f"pack {pack!r}: {self.path}: " + "; ".join(lines))

    @staticmethod
    def combine(errors: dict[str, PackError]) -> PackError:
        """One error saying what is wrong with each of several packs."""
        if len(errors) == 1:
            return next(iter(errors.values()))
        combined = PackError(",".join(sorted(errors)), "several packs", [])
        combined.args = (f"{len(errors)} packs do not load: "
                         + " | ".join(str(errors[name]) for name in sorted(errors)),)
        return combined

    def __str__(self) -> str:
        return self.args[0]


def _pydantic_problems(exc: pydantic.ValidationError) -> list[tuple[str, str]]:
    problems = []
    for error in exc.errors():
        field = ".".join(str(p) for p in error["loc"])
        kind = error["type"]
        if kind == "extra_forbidden":
            message = "unknown field"
        elif kind == "missing":
            message = "required field is missing"
        else:
            message = error["msg"].removeprefix("Value error, ")
            if "input" in error and kind not in ("value_error",):
                message += f" (got {error['input']!r})"
        problems.append((field, message))
    return problems


def _label_rule(rule: str) -> Callable[[pd.Series], pd.Series]:
    import pandas as pd  # not at import: DAG files load packs at parse time

    match = LABEL_RULE.match(rule)
    if match is None:  # the spec refuses such a rule: this is a caller's mistake
        raise ValueError(f"label rule {rule!r} is not 'value' or '<op> <number or quoted text>'")
    if match["value"]:
        return lambda s: pd.to_numeric(s, errors="coerce").astype("float64")
    op = match["op"]
    if match["number"] is not None:
        limit: Any = float(match["number"])

        def prepare(s):
            return pd.to_numeric(s, errors="coerce")
    else:
        limit = match["text"]

        def prepare(s):
            return s.astype(object).where(s.notna())
    compare = {">": np.greater, ">=": np.greater_equal, "<": np.less, "<=": np.less_equal,
               "==": np.equal, "!=": np.not_equal}[op]

    def apply(s: pd.Series) -> pd.Series:
        values = prepare(s)
        known = values.notna()
        result = pd.Series(np.nan, index=s.index, dtype="float64")
        result[known] = compare(values[known].to_numpy(), limit).astype("float64")
        return result
    return apply


@dataclass(frozen=True)
class Pack:
    """A validated pack, ready for every stage.

    :param spec: the validated spec.
    :param directory: the pack's directory.
    :param hooks: the imported hooks module, if the pack has one.
    """

    spec: PackSpec
    directory: Path
    hooks: ModuleType | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def spec_path(self) -> Path:
        return self.directory / SPEC_FILE

    @property
    def hooks_path(self) -> Path | None:
        if self.hooks is None:
            return None
        if self.hooks.__file__ is None:
            raise PackError(self.name, self.directory, [("hooks", "the module has no file")])
        return Path(self.hooks.__file__)

    @property
    def task(self) -> str:
        return self.spec.task

    # -- columns and features ----------------------------------------------------------
    @cached_property
    def numeric_features(self) -> list[str]:
        return list(self.spec.features.numeric)

    @cached_property
    def categorical_features(self) -> list[str]:
        return list(self.spec.features.categorical)

    @cached_property
    def features(self) -> list[str]:
        """Every feature, in the model's column order (numeric, then categorical)."""
        return self.numeric_features + self.categorical_features

    @cached_property
    def derived_features(self) -> list[str]:
        return [f for f in self.features if f not in self.spec.columns]

    @cached_property
    def inputs(self) -> list[str]:
        """Raw columns the features are computed from (what a request carries)."""
        if self.spec.features.inputs is not None:
            return list(self.spec.features.inputs)
        return [f for f in self.features if f in self.spec.columns]

    @property
    def time_column(self) -> str:
        return self.spec.time.column

    @property
    def id_column(self) -> str | None:
        return self.spec.id_column

    @cached_property
    def request_columns(self) -> list[str]:
        """Fields of a served row: the time column, the inputs, then the optional id."""
        columns = [self.time_column, *[c for c in self.inputs if c != self.time_column]]
        if self.id_column and self.id_column not in columns:
            columns.append(self.id_column)
        return columns

    def column_type(self, name: str) -> str:
        return self.spec.columns[name].type

    def is_text(self, name: str) -> bool:
        """Whether a declared column holds text (category, text or datetime)."""
        return self.spec.columns[name].type in TEXT_TYPES

    @cached_property
    def text_columns(self) -> list[str]:
        return [c for c, spec in self.spec.columns.items() if spec.type in TEXT_TYPES]

    @cached_property
    def sort_key(self) -> list[str]:
        return list(self.spec.key) or list(self.spec.columns)

    # -- the one feature path ------------------------------------------------------------
    def derive(self, columns: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The derive hook's features from input arrays (empty without a hook)."""
        if not self.derived_features:
            return {}
        if self.spec.features.derive is None:  # load_pack refuses such a spec
            raise PackError(self.name, self.spec_path, [(
                "features", f"{self.derived_features} need a derive hook")])
        derived = getattr(self.hooks, self.spec.features.derive)(columns)
        missing = [f for f in self.derived_features if f not in derived]
        if missing:
            raise PackError(self.name, self.hooks_path or self.spec_path, [(
                "features.derive", f"{self.spec.features.derive}() returned no {missing}")])
        return derived

    def label(self, frame: pd.DataFrame) -> pd.Series:
        """The label of each row as float64 (binary: 1.0/0.0), NaN where unknown."""
        import pandas as pd

        spec = self.spec.label
        if spec.hook:
            values = getattr(self.hooks, spec.hook)(frame)
            return pd.Series(np.asarray(values, dtype="float64"), index=frame.index)
        if spec.rule is None or spec.column is None:  # the spec refuses such a label
            raise PackError(self.name, self.spec_path, [(
                "label", "needs a hook, or a rule and its column")])
        return _label_rule(spec.rule)(frame[spec.column])

    @property
    def metric(self) -> str:
        return self.spec.metric

    @property
    def higher_is_better(self) -> bool:
        return self.metric in HIGHER_IS_BETTER

    # -- landing files -------------------------------------------------------------------
    @property
    def interval(self) -> str:
        return self.spec.landing.interval

    def landing_name(self, start: dt.date) -> str:
        """The landing file name of the interval starting on ``start``."""
        return self.spec.landing.pattern.replace("{date}", start.isoformat())

    def interval_end(self, start: dt.date) -> dt.date:
        return interval_end(start, self.interval)

    def local_dates(self, values) -> np.ndarray:
        return local_dates(values, self.spec.time)

    def load_source(self) -> pd.DataFrame:
        """Every row of the pack's history, from its source loader hook (for replays).

        :raises PackError: the pack declares no ``[source]``.
        """
        if self.spec.source is None:
            raise PackError(self.name, self.spec_path, [
                ("source", "this pack has no [source] loader to replay history from")])
        return getattr(self.hooks, self.spec.source.loader)()

    # -- identity ------------------------------------------------------------------------
    @cached_property
    def digest(self) -> str:
        """sha256 of the spec file and the hooks module: recorded with every model."""
        digest = hashlib.sha256(self.spec_path.read_bytes())
        if self.hooks_path:
            digest.update(self.hooks_path.read_bytes())
        return digest.hexdigest()

    @cached_property
    def label_digest(self) -> str:
        """sha256 of the label's definition (the rule, or the hook's source code)."""
        definition = self.spec.label.model_dump()
        if self.spec.label.hook:
            definition["source"] = inspect.getsource(getattr(self.hooks, self.spec.label.hook))
        definition.pop("name", None)
        return hashlib.sha256(json.dumps(definition, sort_keys=True).encode()).hexdigest()

    def identity(self) -> dict:
        """What the registry records of the pack beside data and code versions."""
        return {"name": self.name, "task": self.task, "digest": self.digest,
                "label_digest": self.label_digest, "metric": self.metric}


# -- loading ---------------------------------------------------------------------------
def _import_hooks(name: str, path: Path) -> ModuleType:
    module_name = f"driftline_pack_{name}_hooks"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise PackError(name, path, [("hooks", f"{path.name} is not a Python module (a .py file)")])
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses and pickling-free tools look it up
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(module_name, None)
        raise PackError(name, path, [("hooks", f"does not import: {type(exc).__name__}: "
                                               f"{exc}")]) from exc
    return module


def _check_hooks(pack: Pack, hooks_file: Path) -> list[tuple[str, str]]:
    spec = pack.spec
    wanted = [("features.derive", spec.features.derive), ("label.hook", spec.label.hook),
              ("source.loader", spec.source.loader if spec.source else None)]
    problems = []
    for field, function in wanted:
        if function is None:
            continue
        if pack.hooks is None:
            problems.append((field, f"names {function!r} but the pack has no hooks module "
                                    f"({DEFAULT_HOOKS} or hooks = \"file.py\")"))
        elif not callable(getattr(pack.hooks, function, None)):
            problems.append((field, f"{hooks_file.name} has no function {function!r}"))
    if problems or not spec.features.derive:
        return problems
    empty = {c: (np.empty(0, dtype=object) if pack.is_text(c) else np.empty(0))
             for c in pack.inputs}
    try:
        pack.derive(empty)
    except PackError as exc:
        problems += exc.problems
    except Exception as exc:
        problems.append(("features.derive", f"{spec.features.derive}() raised on an empty "
                                            f"input: {type(exc).__name__}: {exc}"))
    return problems


def load_pack(directory: Path | str, overrides: dict | None = None) -> Pack:
    """Load and validate the pack in ``directory``.

    :param overrides: the ``[gate]`` tables the pack runs with, to check their metrics.
    :raises PackError: the spec is unreadable or invalid, or a hook does not import or is
        missing; every problem found is listed, each with its field.
    """
    directory = Path(directory).absolute()
    path = directory / SPEC_FILE
    name = directory.name
    if not path.is_file():
        raise PackError(name, path, [("", f"no {SPEC_FILE} in {directory}")])
    try:
        raw = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise PackError(name, path, [("", f"not valid TOML: {exc}")]) from exc
    given = raw.get("name")
    name = given if isinstance(given, str) else name
    try:
        spec = PackSpec.model_validate(raw)
    except pydantic.ValidationError as exc:
        raise PackError(name, path, _pydantic_problems(exc)) from None
    gate = {**spec.gate, **((overrides or {}).get("gate") or {})}
    problems = reference_errors(spec, gate)
    if spec.name != directory.name:
        problems.append(("name", f"{spec.name!r} must be the pack directory's name "
                                 f"({directory.name!r})"))
    if problems:
        raise PackError(name, path, problems)
    hooks_file = directory / (spec.hooks or DEFAULT_HOOKS)
    if spec.hooks and not hooks_file.is_file():
        raise PackError(name, path, [("hooks", f"{hooks_file.name} does not exist in "
                                               f"{directory}")])
    hooks = _import_hooks(spec.name, hooks_file) if hooks_file.is_file() else None
    pack = Pack(spec, directory, hooks)
    problems = _check_hooks(pack, hooks_file)
    if problems:
        raise PackError(name, hooks_file if hooks else path, problems)
    return pack


def discover_packs(packs_dir: Path | str, overrides: dict | None = None,
                   ) -> tuple[dict[str, Pack], dict[str, PackError]]:
    """Every pack under ``packs_dir`` (one directory each, with a ``pack.toml``).

    :param overrides: per pack name, the installation's ``[packs.<name>]`` tables.

    :return: the valid packs by name, and the broken ones' errors by directory name; a broken
        pack never hides the others.
    """
    packs: dict[str, Pack] = {}
    errors: dict[str, PackError] = {}
    root = Path(packs_dir)
    for directory in sorted(p for p in root.glob("*") if (p / SPEC_FILE).is_file()):
        try:
            pack = load_pack(directory, (overrides or {}).get(directory.name))
        except PackError as exc:
            errors[directory.name] = exc
            continue
        if pack.name in packs:
            errors[directory.name] = PackError(pack.name, pack.spec_path, [(
                "name", f"{pack.name!r} is also the name of {packs[pack.name].directory}")])
            continue
        packs[pack.name] = pack
    return packs, errors

