import datetime as dt
import json

import numpy as np
import pytest
from driftline.features import FeatureSchema
from driftline.registry import Registry
from driftline.settings import TrainingSettings
from driftline.training import (
    GpuUnavailableError,
    main,
    predict_proba,
    resolve_params,
    train,
)
from driftline.versioning import DataRepo

from tests.helpers import DATA_END, DATA_START, settings_at


def test_model_beats_chance_on_the_time_holdout(trained_home):
    settings = settings_at(trained_home)
    version = Registry(settings.registry_dir, settings.model_name).get("v0001")
    metrics = version.metrics
    assert 0.6 < metrics["auc"] <= 1.0
    assert metrics["device"] == "cpu"
    holdout_days = sorted({dt.date(int(r.year), int(r.month), int(r.day))
                           for r in version.holdout().itertuples()})
    n = settings.training.holdout_days
    assert holdout_days == [DATA_END - dt.timedelta(days=i) for i in range(n - 1, -1, -1)]


def test_recorded_smoke_predictions_are_reproducible(trained_home):
    settings = settings_at(trained_home)
    version = Registry(settings.registry_dir, settings.model_name).get("v0001")
    import pandas as pd

    smoke = version.metadata["smoke"]
    proba = predict_proba(version.load_booster(), pd.DataFrame(smoke["rows"]),
                          FeatureSchema.from_dict(version.metadata["feature_schema"]))
    np.testing.assert_allclose(proba, smoke["predictions"], atol=1e-6)


def test_same_inputs_reuse_the_version(trained_home):
    settings = settings_at(trained_home)
    head = DataRepo(settings.data_repo, settings.dvc_remote).head()
    result = train(settings, head, DATA_START, DATA_END)
    assert result["reused"] and result["version"] == "v0001"


def test_entrypoint_prints_the_result_as_json(home_copy, monkeypatch, capsys):
    monkeypatch.setenv("DRIFTLINE_HOME", str(home_copy))
    settings = settings_at(home_copy)
    head = DataRepo(settings.data_repo, settings.dvc_remote).head()
    assert main(["--data-version", head, "--start", str(DATA_START), "--end", str(DATA_END),
                 "--params", '{"max_depth": 3}', "--reason", "cli test"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["version"] == "v0002" and not result["reused"]
    assert Registry(settings.registry_dir, "flight_delay").get("v0002").metadata[
        "params"]["max_depth"] == 3


def test_unknown_hyperparameter_is_refused_by_name():
    with pytest.raises(ValueError, match="max_dept"):
        resolve_params(TrainingSettings(), {"max_dept": 3})


def test_asking_for_a_gpu_without_one_fails_instead_of_silently_using_the_cpu(home_copy):
    settings = settings_at(home_copy)
    head = DataRepo(settings.data_repo, settings.dvc_remote).head()
    with pytest.raises(GpuUnavailableError, match="trained on 'cpu'"):
        train(settings, head, DATA_START, DATA_END, params={"device": "cuda"})
    assert [v.version for v in Registry(settings.registry_dir, "flight_delay").versions()] == [
        "v0001"]
