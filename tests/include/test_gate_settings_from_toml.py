"""The gate's thresholds come from the driftline TOML named by ``$DRIFTLINE_CONFIG``:
``[packs.<name>.gate]`` overrides the pack's spec, ``[gate]`` applies where the spec is silent.
Each limit is tightened just past a figure measured here with sklearn, so exactly that check
fails."""

from __future__ import annotations

import re
import shutil
import sys
import tomllib

import pytest
from driftline.evaluation import run_gate
from driftline.features import FeatureSchema
from driftline.registry import Registry
from driftline.scoring import predict
from driftline.settings import load_settings
from driftline.training import train
from driftline.versioning import DataRepo
from driftline.workspace import open_workspace
from sklearn.metrics import roc_auc_score

from tests.helpers import DATA_END, DATA_START, PACKS, ROOT, TEST_CONFIG, workspace_at


@pytest.fixture(scope="module")
def twin_home(tmp_path_factory, trained_home):
    """``trained_home`` plus v0002, a near-twin of the champion v0001 (same window)."""
    home = tmp_path_factory.mktemp("gate-toml") / "home"
    shutil.copytree(trained_home, home, symlinks=True)
    ws = workspace_at(home)
    train(ws, DataRepo.of(ws).head(), DATA_START, DATA_END, params={"subsample": 0.89},
          reason="twin")
    return home


def config_with(tmp_path, extra: str):
    """The test configuration plus ``extra`` TOML, written as a file of its own."""
    path = tmp_path / "driftline.toml"
    path.write_text(f"{TEST_CONFIG.read_text()}\n{extra}\n")
    return path


def workspace_from_env(home, config, monkeypatch, packs_dir=PACKS):
    """The flights workspace as a worker builds it: settings from ``$DRIFTLINE_CONFIG``."""
    monkeypatch.setenv("DRIFTLINE_CONFIG", str(config))
    return open_workspace("flights", load_settings(home=home, packs_dir=packs_dir))


def auc(pack, version, holdout) -> float:
    """AUC of ``version`` on ``holdout``, by sklearn, the label straight from the rule."""
    schema = FeatureSchema.from_dict(version.metadata["feature_schema"])
    proba = predict(pack, version.load_booster(), holdout, schema)
    return roc_auc_score((holdout["arr_delay"] > 15).astype(int), proba)


def test_the_readmes_configuration_example_resolves_as_it_says(tmp_path, monkeypatch):
    readme = (ROOT / "README.md").read_text()
    (block,) = [b for b in re.findall(r"```toml\n(.*?)```", readme, re.S)
                if "[packs.flights.gate]" in b]
    example = tomllib.loads(block)
    ws = workspace_from_env(tmp_path, config_with(tmp_path, ""), monkeypatch)
    assert ws.gate.floors == {"auc": 0.60}  # the pack's own spec, without the example
    assert example["packs"]["flights"]["gate"]["floors"] != ws.gate.floors
    path = tmp_path / "example.toml"
    path.write_text(block)
    ws = workspace_from_env(tmp_path, path, monkeypatch)
    assert ws.gate.floors == example["packs"]["flights"]["gate"]["floors"]
    assert ws.gate.max_worsening == example["packs"]["flights"]["gate"]["max_worsening"]
    assert ws.settings.dvc_remote_url == example["dvc_remote_url"]
    assert ws.monitor.column_drift_threshold == example["monitor"]["column_drift_threshold"]


@pytest.mark.parametrize("check", ["candidate AUC on holdout", "AUC drop vs champion"])
def test_a_pack_gate_table_in_the_toml_changes_the_verdict(twin_home, tmp_path, monkeypatch,
                                                           flights_pack, check):
    registry = Registry(twin_home / "registry", "flights")
    champion, twin = registry.get("v0001"), registry.get("v0002")
    holdout = twin.holdout()
    ours, theirs = (auc(flights_pack, v, holdout) for v in (twin, champion))
    gate = {"floors": {"auc": 0.60}, "max_worsening": {"auc": 0.01, "logloss": 0.02}}
    if check == "candidate AUC on holdout":
        gate["floors"]["auc"] = round(ours + 0.001, 6)
    else:
        gate["max_worsening"]["auc"] = round(theirs - ours - 0.001, 6)

    plain = workspace_from_env(twin_home, config_with(tmp_path, ""), monkeypatch)
    assert run_gate(plain.pack, twin, champion, plain.gate, tmp_path / "plain").passed
    table = (f"floors = {{auc = {gate['floors']['auc']!r}}}\n"
             f"max_worsening = {{auc = {gate['max_worsening']['auc']!r}, logloss = 0.02}}")
    ws = workspace_from_env(twin_home, config_with(tmp_path, f"[packs.flights.gate]\n{table}"),
                            monkeypatch)
    assert (ws.gate.floors, ws.gate.max_worsening) == (gate["floors"], gate["max_worsening"])
    verdict = run_gate(ws.pack, twin, champion, ws.gate, tmp_path / "strict")
    assert [c.name for c in verdict.failures] == [check], verdict.table()
    assert verdict.failures[0].margin == pytest.approx(-0.001, abs=1e-5)


def test_an_installation_gate_section_fills_only_what_the_pack_leaves_unset(
        twin_home, tmp_path, monkeypatch):
    """``[gate]``: its ``floors`` (AUC 0.99, which v0001 misses) do not replace the floors the
    flights spec sets; its ``allow_label_change``, which the spec leaves unset, lets a
    candidate trained under another label definition through on the floors alone."""
    hooks = "driftline_pack_flights_hooks"
    monkeypatch.setitem(sys.modules, hooks, sys.modules[hooks])  # restored after the test
    packs = tmp_path / "packs"
    shutil.copytree(PACKS / "flights", packs / "flights",
                    ignore=shutil.ignore_patterns("__pycache__"))
    spec = packs / "flights" / "pack.toml"
    spec.write_text(spec.read_text().replace('rule = "> 15"', 'rule = "> 30"'))
    home = tmp_path / "home"
    shutil.copytree(twin_home, home, symlinks=True)
    plain_config = config_with(tmp_path, "")
    ws = workspace_from_env(home, plain_config, monkeypatch, packs)
    champion = Registry(ws.registry_dir, "flights").get("v0001")
    candidate = Registry(ws.registry_dir, "flights").get(train(
        ws, DataRepo.of(ws).head(), DATA_START, DATA_END, reason="late = 30 min")["version"])
    refused = run_gate(ws.pack, candidate, champion, ws.gate, tmp_path / "refused")
    assert [c.name for c in refused.failures] == ["label definition same as champion"]

    wide = tmp_path / "wide"
    wide.mkdir()
    config = config_with(wide, "[gate]\nfloors = {auc = 0.99}\nallow_label_change = true")
    ws = workspace_from_env(home, config, monkeypatch, packs)
    assert ws.gate.floors == {"auc": 0.60} and ws.gate.allow_label_change is True
    allowed = run_gate(ws.pack, candidate, champion, ws.gate, tmp_path / "allowed")
    assert allowed.passed, allowed.table()
    assert [c.name for c in allowed.checks] == ["candidate AUC on holdout",
                                                "label definition same as champion"]
    assert "allowed by [gate] allow_label_change" in allowed.checks[-1].detail


def test_the_significance_policy_and_confidence_come_from_the_toml(twin_home, tmp_path,
                                                                   monkeypatch):
    """``[packs.flights.gate] significance = "require_better"``: the champion against itself
    is refused (not significantly better) where the default passes it; ``[gate] confidence``,
    which the spec leaves unset, sets the interval's level."""
    champion = Registry(twin_home / "registry", "flights").get("v0001")
    plain = workspace_from_env(twin_home, config_with(tmp_path, ""), monkeypatch)
    assert (plain.gate.significance, plain.gate.confidence) == ("refuse_worse", 0.95)
    assert run_gate(plain.pack, champion, champion, plain.gate, tmp_path / "plain").passed

    config = config_with(tmp_path, '[gate]\nconfidence = 0.9\n\n'
                                   '[packs.flights.gate]\nsignificance = "require_better"')
    ws = workspace_from_env(twin_home, config, monkeypatch)
    assert (ws.gate.significance, ws.gate.confidence) == ("require_better", 0.9)
    assert ws.gate.floors == {"auc": 0.60}  # the spec's own, untouched
    verdict = run_gate(ws.pack, champion, champion, ws.gate, tmp_path / "strict")
    (failure,) = verdict.failures
    assert failure.name == "AUC vs champion, 90% CI low"
    assert failure.statistics["confidence"] == 0.9 and failure.value == 0
    assert "90% CI [+0.0000, +0.0000]" in verdict.reason()
