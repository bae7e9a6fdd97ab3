"""Train a pack's model on an exact data version and register it.

One entrypoint serves every place training runs: an Airflow worker (local, the default) and
a Kubernetes pod run the same command::

    python -m driftline.training --pack flights --data-version <git rev> \
        --start 2013-01-01 --end 2013-03-31 --params '{"max_depth": 6}' --reason "initial"

The objective comes from the pack's task (binary: logistic; regression: squared error).
The last line on stdout is the result as JSON (model version, metrics, data version, device).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import hashlib
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from driftline import code_version
from driftline.features import FeatureSchema, build_features, build_label, encode
from driftline.hyperparameters import HYPERPARAMETERS
from driftline.packs import Pack
from driftline.registry import ModelVersion, Registry
from driftline.scoring import request_rows
from driftline.settings import TrainingSettings
from driftline.versioning import DataRepo
from driftline.workspace import Workspace, open_workspace

log = logging.getLogger(__name__)

SMOKE_ROWS = 20
LABEL = "__label"
OBJECTIVES = {"binary": ("binary:logistic", ["auc", "logloss"]),
              "regression": ("reg:squarederror", ["rmse", "mae"])}


class GpuUnavailableError(RuntimeError):
    """Training asked for a GPU but XGBoost ran on the CPU."""


def resolve_params(defaults: TrainingSettings, overrides: dict | None) -> dict:
    """Training hyperparameters: the settings' defaults with ``overrides`` applied.

    :raises ValueError: an override names an unknown hyperparameter.
    """
    overrides = dict(overrides or {})
    unknown = set(overrides) - set(HYPERPARAMETERS)
    if unknown:
        raise ValueError(f"unknown hyperparameter(s) {sorted(unknown)}; "
                         f"expected some of {list(HYPERPARAMETERS)}")
    base = {k: getattr(defaults, k) for k in HYPERPARAMETERS}
    return {**base, **overrides}


def run_key(data_version: str, start: dt.date, end: dt.date, params: dict,
            pack_digest: str = "") -> str:
    """Identity of a training run: same inputs, pack and code, same key (and model version)."""
    blob = json.dumps({"data_version": data_version, "start": str(start), "end": str(end),
                       "params": params, "code": code_version(), "pack": pack_digest},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def split_holdout(pack: Pack, raw: pd.DataFrame,
                  holdout_days: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Time-based split: the last ``holdout_days`` local days are held out, never shuffled."""
    dates = pack.local_dates(raw[pack.time_column])
    cutoff = dates.max() - np.timedelta64(holdout_days - 1, "D")
    return raw[dates < cutoff], raw[dates >= cutoff]


def device_used(booster) -> str:
    """The device XGBoost actually trained on (it silently falls back to the CPU)."""
    config = json.loads(booster.save_config())
    return config["learner"]["generic_param"]["device"]


def classification_metrics(y_true: np.ndarray, proba: np.ndarray) -> dict:
    """AUC, log loss and threshold-0.5 metrics of probabilities against 0/1 labels."""
    from sklearn.metrics import (
        accuracy_score,
        f1_score,
        log_loss,
        precision_score,
        recall_score,
        roc_auc_score,
    )

    predicted = (proba >= 0.5).astype(int)
    return {
        "auc": float(roc_auc_score(y_true, proba)),
        "logloss": float(log_loss(y_true, proba, labels=[0, 1])),
        "accuracy": float(accuracy_score(y_true, predicted)),
        "precision": float(precision_score(y_true, predicted, zero_division=0)),
        "recall": float(recall_score(y_true, predicted, zero_division=0)),
        "f1": float(f1_score(y_true, predicted, zero_division=0)),
        "positive_rate": float(np.mean(y_true)),
        "rows": len(y_true),
    }


def regression_metrics(y_true: np.ndarray, predicted: np.ndarray) -> dict:
    """RMSE, MAE, R2 and mean error of predictions against true values."""
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    return {
        "rmse": float(np.sqrt(mean_squared_error(y_true, predicted))),
        "mae": float(mean_absolute_error(y_true, predicted)),
        "r2": float(r2_score(y_true, predicted)),
        "mean_error": float(np.mean(predicted - y_true)),
        "target_mean": float(np.mean(y_true)),
        "rows": len(y_true),
    }


def task_metrics(pack: Pack, y_true: np.ndarray, predicted: np.ndarray) -> dict:
    """The task's holdout metrics (classification or regression)."""
    if pack.task == "binary":
        return classification_metrics(y_true, predicted)
    return regression_metrics(y_true, predicted)


def _progress_callback(total: int, every: int = 50):
    """An XGBoost callback that logs the holdout scores every ``every`` rounds."""
    import xgboost as xgb

    class Progress(xgb.callback.TrainingCallback):
        def after_iteration(self, model, epoch, evals_log):
            if (epoch + 1) % every == 0 or epoch + 1 == total:
                scores = {f"{d}-{m}": round(v[-1], 4)
                          for d, ms in evals_log.items() for m, v in ms.items()}
                log.info("round %d/%d %s", epoch + 1, total, scores)
            return False

    return Progress()


def train(ws: Workspace, data_version: str, start: dt.date, end: dt.date,
          params: dict | None = None, reason: str = "", data_repo: str | None = None) -> dict:
    """Train ``ws``'s pack on ``[start, end]`` at ``data_version``, evaluate on the time
    holdout, register.

    :return: the result: model version, metrics, data version, device used, run key.
    :raises LookupError: no data in the window at that version.
    :raises GpuUnavailableError: a CUDA device was asked for and none was used.
    """
    import xgboost as xgb

    pack, settings = ws.pack, ws.training
    params = resolve_params(settings, params)
    key = run_key(data_version, start, end, params, pack.digest)
    registry = Registry(ws.registry_dir, ws.model_name)
    existing = registry.find_run(key)
    if existing:
        log.info("run %s already registered as %s; not training again", key, existing.version)
        return _result(existing, reused=True)

    repo = DataRepo.of(ws, data_repo)
    raw = repo.read_days(data_version, start, end)
    raw = raw.assign(**{LABEL: build_label(pack, raw)})
    labeled = raw[raw[LABEL].notna()]
    train_raw, holdout_raw = split_holdout(pack, labeled, settings.holdout_days)
    if train_raw.empty or holdout_raw.empty:
        raise LookupError(f"window {start}..{end} at {data_version[:12]} has too few days for "
                          f"a {settings.holdout_days}-day holdout")
    time_col = pack.time_column
    log.info("training %s on %d rows, holding out %d rows (%s .. %s)", pack.name,
             len(train_raw), len(holdout_raw), holdout_raw[time_col].min(),
             holdout_raw[time_col].max())

    train_features = build_features(pack, train_raw)
    schema = FeatureSchema.fit(pack, train_features)
    objective, eval_metric = OBJECTIVES[pack.task]
    booster_params = {
        "objective": objective, "eval_metric": eval_metric,
        "tree_method": "hist", "device": params["device"], "max_depth": params["max_depth"],
        "learning_rate": params["learning_rate"], "subsample": params["subsample"],
        "colsample_bytree": params["colsample_bytree"],
        "min_child_weight": params["min_child_weight"], "seed": 0,
        "max_cat_to_onehot": 1,
    }
    if params["nthread"]:
        booster_params["nthread"] = params["nthread"]
    dtrain = xgb.DMatrix(encode(train_features, schema), label=train_raw[LABEL].to_numpy(),
                         feature_names=schema.features, feature_types=schema.feature_types,
                         enable_categorical=True)
    dholdout = xgb.DMatrix(encode(build_features(pack, holdout_raw), schema),
                           label=holdout_raw[LABEL].to_numpy(), feature_names=schema.features,
                           feature_types=schema.feature_types, enable_categorical=True)
    started = time.perf_counter()
    booster = xgb.train(booster_params, dtrain, num_boost_round=params["num_boost_round"],
                        evals=[(dholdout, "holdout")], verbose_eval=False,
                        callbacks=[_progress_callback(params["num_boost_round"])])
    train_seconds = time.perf_counter() - started
    device = device_used(booster)
    if params["device"].startswith("cuda") and not device.startswith("cuda"):
        message = (f"asked for device {params['device']!r} but XGBoost trained on {device!r}: "
                   "no GPU visible to this process")
        if settings.require_gpu:
            raise GpuUnavailableError(message)
        log.warning(message)

    predicted = booster.predict(dholdout)
    metrics = task_metrics(pack, holdout_raw[LABEL].to_numpy(), predicted)
    metrics.update(train_rows=len(train_raw), train_seconds=round(train_seconds, 3),
                   device=device)
    log.info("holdout metrics: %s", {k: round(v, 4) if isinstance(v, float) else v
                                     for k, v in metrics.items()})

    smoke = holdout_raw.head(SMOKE_ROWS)
    metadata = {
        "reason": reason, "data_version": data_version, "code_version": code_version(),
        "pack": pack.identity(),
        "window": {"start": str(start), "end": str(end)},
        "holdout": {"start": str(holdout_raw[time_col].min()),
                    "end": str(holdout_raw[time_col].max())},
        "params": params, "metrics": metrics, "feature_schema": schema.to_dict(),
        "training_settings": dataclasses.asdict(settings),
        "smoke": {"rows": request_rows(pack, smoke),
                  "predictions": [float(p) for p in predicted[:SMOKE_ROWS]]},
    }
    reference = train_features.sample(min(len(train_features), settings.reference_rows),
                                      random_state=0).sort_index()
    with tempfile.TemporaryDirectory() as tmp:
        model_file = Path(tmp) / "model.ubj"
        booster.save_model(str(model_file))
        version = registry.register(model_file, metadata, reference,
                                    holdout_raw.drop(columns=[LABEL]), run_key=key)
    log.info("registered %s %s (%s %.4f, device %s)", ws.model_name, version.version,
             pack.metric, metrics[pack.metric], device)
    return _result(version, reused=False)


def _result(version: ModelVersion, reused: bool) -> dict:
    meta = version.metadata
    return {"model_name": version.name, "pack": version.name, "version": version.version,
            "data_version": meta["data_version"], "window": meta["window"],
            "metrics": meta["metrics"], "device": meta["metrics"].get("device"),
            "run_key": meta["run_key"], "sha256": meta["artifact"]["sha256"],
            "reused": reused}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m driftline.training", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pack", required=True, help="dataset pack name (under the packs "
                        "directory: $DRIFTLINE_PACKS)")
    parser.add_argument("--data-version", required=True, help="git commit of the data repo")
    parser.add_argument("--start", required=True, type=dt.date.fromisoformat)
    parser.add_argument("--end", required=True, type=dt.date.fromisoformat)
    parser.add_argument("--params", default="{}", help="JSON object of hyperparameters")
    parser.add_argument("--reason", default="", help="why this model is trained")
    parser.add_argument("--data-repo", default=None, help="data repo path or git URL")
    parser.add_argument("--output", default=None, help="also write the result JSON here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        params = json.loads(args.params)
    except json.JSONDecodeError as exc:
        parser.error(f"--params is not valid JSON: {exc}")
    result = train(open_workspace(args.pack), args.data_version, args.start, args.end, params,
                   args.reason, args.data_repo)
    text = json.dumps(result)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
