import dataclasses, datetime as dt, json, shutil
import pandas as pd
from driftline.evaluation import run_gate
from driftline.packs.timeline import iter_intervals
from driftline.registry import Registry
from driftline.training import train, predict
from driftline.features import FeatureSchema
from driftline.versioning import DataRepo
from sklearn.metrics import log_loss, roc_auc_score
from tests.helpers import DATA_END, DATA_START, workspace_at


def test_measure(tmp_path, trained_home, flights):
    home = tmp_path / "home"
    shutil.copytree(trained_home, home, symlinks=True)
    ws = workspace_at(home)
    repo = DataRepo.of(ws)
    dates = flights[["year", "month", "day"]].apply(tuple, axis=1)
    for day in iter_intervals(dt.date(2013, 7, 1), dt.date(2013, 7, 7), "daily"):
        repo.write_partition(day, flights[dates == (day.year, day.month, day.day)])
    res = train(ws, repo.head(), dt.date(2013, 6, 14), dt.date(2013, 7, 7), reason="drift")
    reg = Registry(ws.registry_dir, ws.model_name)
    cand, champ = reg.get(res["version"]), reg.get("v0001")
    v = run_gate(ws.pack, cand, champ, ws.gate, tmp_path / "g", ws.monitor.column_drift_threshold)
    out = {"passed": v.passed, "table": v.table(), "drift": v.metrics["train_drift"]}
    # serving null row
    smoke = champ.metadata["smoke"]
    row = {**smoke["rows"][0], "wind_gust": None, "temp": None, "dest": "NEVER-SEEN"}
    schema = FeatureSchema.from_dict(champ.metadata["feature_schema"])
    out["null_pred"] = float(predict(ws.pack, champ.load_booster(), pd.DataFrame([row]), schema)[0])
    out["smoke0"] = smoke["predictions"][0]
    out["smoke_row"] = smoke["rows"][0]
    Path = __import__("pathlib").Path
    Path("/tmp/h35/measure.json").write_text(json.dumps(out, indent=1, default=str))
