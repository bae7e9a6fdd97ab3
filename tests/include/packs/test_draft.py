"""``driftline pack init`` and ``pack check`` through the real CLI: drafts from both shipped
datasets' samples validate and ingest, and a third pack built only from the README's steps,
on a file this test writes, runs ingest → train → gate → drift with no driftline code changed."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import tomllib

import numpy as np
import pandas as pd
import pytest
from driftline.evaluation import run_gate
from driftline.ingest import ingest_interval
from driftline.landing import write_landing_file
from driftline.monitoring import run_drift_report
from driftline.packs import PackError, load_pack
from driftline.registry import Registry
from driftline.training import train
from driftline.versioning import DataRepo

from tests.helpers import PACKS, workspace_at


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "driftline.cli", *args], capture_output=True,
                          text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def bikes_pack():
    return load_pack(PACKS / "bikes")


@pytest.mark.parametrize("dataset", ["flights", "bikes"])
def test_a_draft_from_a_real_sample_validates_and_ingests_that_sample(
        dataset, tmp_path, flights, bikes_pack, flights_pack):
    pack = {"flights": flights_pack, "bikes": bikes_pack}[dataset]
    rows = flights if dataset == "flights" else bikes_pack.load_source()
    dates = pack.local_dates(rows[pack.time_column])
    day = np.datetime64("2013-01-07" if dataset == "flights" else "2011-03-07")
    sample = rows[dates == day][list(pack.spec.columns)]
    sample_path = tmp_path / f"sample_{dataset}.csv"
    sample.to_csv(sample_path, index=False)
    label = pack.spec.label.column

    drafted = cli("pack", "init", str(sample_path), str(tmp_path / "packs" / "draft"),
                  "--label", label, "--timezone", pack.spec.time.timezone)
    assert drafted.returncode == 0, drafted.stdout + drafted.stderr
    spec = tomllib.loads((tmp_path / "packs" / "draft" / "pack.toml").read_text())
    assert spec["time"]["column"] == pack.time_column
    assert spec["task"] == "regression"  # arr_delay and cnt are counts, not two classes
    assert spec["label"] == {"column": label, "rule": "value", "name": label}
    # every column of the sample is declared, with the type a person would pick
    assert set(spec["columns"]) == set(sample.columns)
    expected_types = {"flights": {"carrier": "category", "distance": "integer",
                                  "time_hour": "datetime", "temp": "number"},
                      "bikes": {"season": "category", "temp": "number", "cnt": "integer",
                                "datetime": "datetime"}}[dataset]
    assert {c: spec["columns"][c]["type"] for c in expected_types} == expected_types

    ws = workspace_at(tmp_path / "home", "draft", packs_dir=tmp_path / "packs")
    target = ws.landing_path(day.astype(dt.date))
    target.parent.mkdir(parents=True)
    write_landing_file(ws.pack, sample, target)
    checked = cli("pack", "check", str(tmp_path / "packs" / "draft"), str(target))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "passed" in checked.stdout and f"{len(sample)} rows" in checked.stdout
    version = ingest_interval(ws, day.astype(dt.date))
    assert version.rows == len(sample.drop_duplicates())


def test_pack_check_names_the_field_and_exits_1_on_a_broken_spec(tmp_path):
    broken = tmp_path / "bikes"
    broken.mkdir()
    text = (PACKS / "bikes" / "pack.toml").read_text().replace('column = "cnt"',
                                                               'column = "count"')
    (broken / "pack.toml").write_text(text)
    (broken / "hooks.py").write_text((PACKS / "bikes" / "hooks.py").read_text())
    result = cli("pack", "check", str(broken))
    assert result.returncode == 1
    assert (f"pack 'bikes': {broken / 'pack.toml'}: field 'label.column': 'count' is not a "
            "declared column") in result.stderr
    with pytest.raises(PackError, match=r"field 'label\.column'"):
        load_pack(broken)


def test_pack_init_refuses_to_overwrite_a_reviewed_spec(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "pack.toml").write_text("reviewed = true\n")
    sample = tmp_path / "s.csv"
    pd.DataFrame({"at": ["2020-01-01T00:00:00"] * 3, "y": [1.0, 2.0, 3.0]}).to_csv(sample,
                                                                                    index=False)
    result = cli("pack", "init", str(sample), str(tmp_path / "mine"), "--label", "y")
    assert result.returncode == 3 and "refusing to overwrite" in result.stderr
    assert (tmp_path / "mine" / "pack.toml").read_text() == "reviewed = true\n"


def _shop_sales(days: int, shift: float = 0.0) -> pd.DataFrame:
    """A small store's orders: the refund probability rises with the amount and the web
    channel; ``shift`` moves the amounts (drift)."""
    rng = np.random.default_rng(7)
    rows = []
    for d in range(days):
        n = 300
        stamp = pd.Timestamp("2026-01-01") + pd.Timedelta(days=d)
        amount = rng.gamma(2.0, 40.0 + shift, n)
        channel = rng.choice(["web", "shop"], n, p=[0.6, 0.4])
        logit = -3 + amount / 60 + (channel == "web") * 1.2
        refunded = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
        rows.append(pd.DataFrame({
            "ordered_at": [(stamp + pd.Timedelta(minutes=int(m))).isoformat()
                           for m in rng.integers(0, 1440, n)],
            "amount": amount.round(2), "channel": channel, "refunded": refunded}))
    return pd.concat(rows, ignore_index=True)


def test_a_third_pack_from_the_readme_runs_the_loop(tmp_path):
    """The README's minimal spec, verbatim in spirit: no hooks, no driftline change."""
    packs = tmp_path / "packs"
    (packs / "sales").mkdir(parents=True)
    (packs / "sales" / "pack.toml").write_text("""
name = "sales"
task = "binary"
[landing]
pattern = "sales_{date}.csv"
interval = "daily"
[time]
column = "ordered_at"
timezone = "Europe/Berlin"
[columns]
ordered_at = {type = "datetime", nullable = false}
amount = {type = "number", range = [0, 100000]}
channel = {type = "category", categories = ["web", "shop"]}
refunded = {type = "integer", range = [0, 1]}
[label]
column = "refunded"
rule = "== 1"
[features]
numeric = ["amount"]
categorical = ["channel"]
[gate]
floors = {auc = 0.6}
max_worsening = {auc = 0.01}
[training]
window_days = 20
holdout_days = 5
num_boost_round = 30
[validation]
min_rows = 100
""")
    assert cli("pack", "check", str(packs / "sales")).returncode == 0
    ws = workspace_at(tmp_path / "home", "sales", packs_dir=packs)
    sales = pd.concat([_shop_sales(20), _shop_sales(10, shift=80.0).assign(
        ordered_at=lambda f: (pd.to_datetime(f["ordered_at"]) + pd.Timedelta(days=20))
        .dt.strftime("%Y-%m-%dT%H:%M:%S"))], ignore_index=True)
    ws.landing_dir.mkdir(parents=True)
    dates = ws.pack.local_dates(sales["ordered_at"])
    first = dt.date(2026, 1, 1)
    for offset in range(30):
        day = first + dt.timedelta(days=offset)
        write_landing_file(ws.pack, sales[dates == np.datetime64(day)], ws.landing_path(day))
        ingest_interval(ws, day)
    head = DataRepo.of(ws).head()
    result = train(ws, head, first, first + dt.timedelta(days=19), reason="third pack")
    assert result["metrics"]["auc"] > 0.7  # the relation is strong: amount and channel
    registry = Registry(ws.registry_dir, "sales")
    candidate = registry.get(result["version"])
    verdict = run_gate(ws.pack, candidate, None, ws.gate, tmp_path / "gate")
    assert verdict.passed and [c.name for c in verdict.checks] == ["candidate AUC on holdout"]
    registry.set_alias("champion", candidate.version, "test")
    drift = run_drift_report(ws, first + dt.timedelta(days=20), first + dt.timedelta(days=29))
    assert "amount" in drift["datasets"]["lake"]["drifted"]  # amounts shifted by +80 a unit
