import datetime as dt
import json

import numpy as np
import pandas as pd
import pytest
from driftline.features import FeatureSchema
from driftline.registry import Registry
from driftline.scoring import predict
from driftline.settings import TrainingSettings
from driftline.training import (
    GpuUnavailableError,
    main,
    resolve_params,
    split_holdout,
    task_metrics,
    train,
)
from driftline.versioning import DataRepo
from sklearn.metrics import roc_auc_score

from tests.gpu import CUDA_DEVICES, cuda_available
from tests.helpers import DATA_END, DATA_START, workspace_at


def test_model_beats_chance_on_the_time_holdout(trained_home):
    ws = workspace_at(trained_home)
    version = Registry(ws.registry_dir, ws.model_name).get("v0001")
    metrics = version.metrics
    holdout = version.holdout()
    # The recorded AUC, recomputed without driftline's metrics: sklearn on the model's
    # predictions against "arrived more than 15 minutes late".
    schema = FeatureSchema.from_dict(version.metadata["feature_schema"])
    proba = predict(ws.pack, version.load_booster(), holdout, schema)
    late = (holdout["arr_delay"] > 15).astype(int)
    assert metrics["auc"] == pytest.approx(roc_auc_score(late, proba), abs=1e-9)
    assert metrics["auc"] > 0.6
    assert metrics["positive_rate"] == pytest.approx(late.mean())
    assert metrics["device"] == "cpu"
    holdout_days = sorted({dt.date(int(r.year), int(r.month), int(r.day))
                           for r in holdout.itertuples()})
    n = ws.training.holdout_days
    assert n == 5
    assert holdout_days == [DATA_END - dt.timedelta(days=i) for i in range(n - 1, -1, -1)]


def test_holdout_split_is_by_local_day(flights_pack):
    # 03:30Z on 3 Jan is 22:30 on 2 Jan in New York: it belongs to the training days.
    raw = pd.DataFrame({"time_hour": ["2013-01-01T12:00:00Z", "2013-01-03T03:30:00Z",
                                      "2013-01-03T12:00:00Z", "2013-01-04T04:00:00Z"]})
    train_rows, holdout = split_holdout(flights_pack, raw, 1)
    assert train_rows.index.tolist() == [0, 1] and holdout.index.tolist() == [2, 3]


def test_task_metrics_of_a_binary_pack(flights_pack):
    y = np.array([0, 0, 1, 1])
    metrics = task_metrics(flights_pack, y, np.array([0.1, 0.6, 0.4, 0.9]))
    assert metrics["auc"] == 0.75 and metrics["accuracy"] == 0.5 and metrics["rows"] == 4
    assert metrics["logloss"] == pytest.approx(-np.mean(np.log([0.9, 0.4, 0.4, 0.9])))


def test_recorded_smoke_predictions_are_reproducible(trained_home):
    ws = workspace_at(trained_home)
    version = Registry(ws.registry_dir, ws.model_name).get("v0001")
    smoke = version.metadata["smoke"]
    assert list(smoke["rows"][0]) == ws.pack.request_columns
    proba = predict(ws.pack, version.load_booster(), pd.DataFrame(smoke["rows"]),
                    FeatureSchema.from_dict(version.metadata["feature_schema"]))
    np.testing.assert_allclose(proba, smoke["predictions"], atol=1e-6)


def test_same_inputs_reuse_the_version(trained_home):
    ws = workspace_at(trained_home)
    result = train(ws, DataRepo.of(ws).head(), DATA_START, DATA_END)
    assert result["reused"] and result["version"] == "v0001"


def test_entrypoint_prints_the_result_as_json(home_copy, monkeypatch, capsys):
    monkeypatch.setenv("DRIFTLINE_HOME", str(home_copy))
    ws = workspace_at(home_copy)
    head = DataRepo.of(ws).head()
    assert main(["--pack", "flights", "--data-version", head, "--start", str(DATA_START),
                 "--end", str(DATA_END), "--params", '{"max_depth": 3}',
                 "--reason", "cli test"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["version"] == "v0002" and not result["reused"]
    assert result["pack"] == "flights"
    meta = Registry(ws.registry_dir, "flights").get("v0002").metadata
    assert meta["params"]["max_depth"] == 3 and meta["reason"] == "cli test"
    assert meta["pack"]["digest"] == ws.pack.digest


def test_unknown_hyperparameter_is_refused_by_name():
    with pytest.raises(ValueError, match="max_dept"):
        resolve_params(TrainingSettings(), {"max_dept": 3})


@pytest.mark.skipif(cuda_available(), reason="a CUDA device is here: XGBoost trains on it")
def test_asking_for_a_gpu_without_one_fails_instead_of_silently_using_the_cpu(home_copy):
    ws = workspace_at(home_copy)
    with pytest.raises(GpuUnavailableError, match="trained on 'cpu'"):
        train(ws, DataRepo.of(ws).head(), DATA_START, DATA_END, params={"device": "cuda"})
    assert [v.version for v in Registry(ws.registry_dir, "flights").versions()] == ["v0001"]


@pytest.mark.skipif(not cuda_available(), reason="no CUDA device")
def test_asking_for_a_gpu_trains_on_it_and_ranks_like_the_cpu_model(home_copy):
    """No row or column sampling (its random streams differ between devices): the CUDA model
    ranks the holdout like the CPU model to 1e-3."""
    ws = workspace_at(home_copy)
    head = DataRepo.of(ws).head()
    same = {"subsample": 1.0, "colsample_bytree": 1.0}
    gpu = train(ws, head, DATA_START, DATA_END, params={**same, "device": "cuda"})
    cpu = train(ws, head, DATA_START, DATA_END, params={**same, "device": "cpu"})
    assert gpu["device"] in CUDA_DEVICES and cpu["device"] == "cpu"
    assert gpu["metrics"]["auc"] == pytest.approx(cpu["metrics"]["auc"], abs=1e-3)
