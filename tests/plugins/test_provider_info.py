"""The provider's metadata, as Airflow's ProvidersManager reads it: every provider module is
listed, and the connection form is declared (no deprecated hook methods)."""

from __future__ import annotations

import importlib
import warnings
from pathlib import Path

import driftline_provider
import pytest
from driftline_provider import get_provider_info

PACKAGE = Path(driftline_provider.__file__).parent
KINDS = ("hooks", "operators", "sensors", "triggers")


def listed(kind: str) -> set[str]:
    return {m for entry in get_provider_info()[kind] for m in entry["python-modules"]}


@pytest.mark.parametrize("kind", KINDS)
def test_every_module_of_each_kind_is_listed(kind):
    on_disk = {f"driftline_provider.{kind}.{p.stem}" for p in (PACKAGE / kind).glob("*.py")
               if p.stem != "__init__"}
    assert on_disk, kind
    assert listed(kind) == on_disk
    for module in on_disk:
        importlib.import_module(module)


def test_the_provider_info_is_valid_against_airflows_schema():
    import json

    import airflow
    import jsonschema

    schema = json.loads((Path(airflow.__file__).parent / "provider_info.schema.json").read_text())
    jsonschema.validate(get_provider_info(), schema)


def test_the_connection_form_is_declared_and_loaded_without_deprecation():
    from airflow.providers_manager import ProvidersManager
    from driftline_provider.hooks.driftline import DriftlineHook

    assert "get_ui_field_behaviour" not in DriftlineHook.__dict__
    assert "get_connection_form_widgets" not in DriftlineHook.__dict__
    manager = ProvidersManager()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        widgets = manager.connection_form_widgets
        behaviours = manager.field_behaviours
        hooks = manager.hooks
        hook = hooks["driftline"]
    assert hook.hook_class_name == "driftline_provider.hooks.driftline.DriftlineHook"
    declared = get_provider_info()["connection-types"][0]["conn-fields"]
    assert {k for k in widgets if k.startswith("extra__driftline__")} == {
        f"extra__driftline__{name}" for name in declared}
    assert widgets["extra__driftline__home"].field["schema"]["title"] == "State directory"
    assert behaviours["driftline"]["hidden_fields"] == ["schema", "port", "host"]
    assert behaviours["driftline"]["relabeling"]["password"] == "DVC remote secret"
    ours = [w for w in caught if "driftline" in str(w.message)]
    assert not ours, [str(w.message) for w in ours]


def test_airflows_deprecation_warnings_fail_the_tests():
    """pyproject.toml makes Airflow's deprecations errors: an API Airflow 4 removes fails a
    test now (e.g. the cncf provider's ``reattach_on_restart``, now ``durable``)."""
    from airflow.exceptions import AirflowProviderDeprecationWarning, RemovedInAirflow4Warning

    for category in (AirflowProviderDeprecationWarning, RemovedInAirflow4Warning):
        with pytest.raises(category):
            warnings.warn("deprecated", category, stacklevel=1)
    warnings.warn("a third-party deprecation", DeprecationWarning, stacklevel=1)  # ignored
