"""The promotion gate: a candidate model against the live champion, with Evidently reports.

Both models predict the *same* rows (the candidate's time holdout), so their quality is
compared like for like. A second report compares the candidate's training features with
the champion's reference data. Every check records its value and threshold; the verdict is
kept as ``verdict.json`` plus HTML reports per run, and :meth:`GateVerdict.table` is what the
task log shows.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from driftline.features import FEATURES, LABEL, FeatureSchema
from driftline.registry import ModelVersion
from driftline.settings import GateSettings

PROBA = "late_probability"


@dataclass(frozen=True)
class GateCheck:
    """One gate check: ``value`` compared with ``threshold`` by ``op``."""

    name: str
    value: float | None
    op: str
    threshold: float
    passed: bool
    detail: str = ""

    @property
    def margin(self) -> float | None:
        """How far inside (positive) or outside (negative) the threshold the value is."""
        if self.value is None:
            return None
        return self.threshold - self.value if self.op == "<=" else self.value - self.threshold


@dataclass
class GateVerdict:
    """The gate's decision for one candidate."""

    candidate: str
    champion: str | None
    checks: list[GateCheck]
    report_dir: str
    metrics: dict = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def failures(self) -> list[GateCheck]:
        return [c for c in self.checks if not c.passed]

    def reason(self) -> str:
        """One line saying why the candidate was refused (or that it passed)."""
        if self.passed:
            return f"{self.candidate} passed all {len(self.checks)} checks"
        return "; ".join(f"{c.name} = {c.value:.4f}, limit {c.op} {c.threshold} "
                         f"(off by {abs(c.margin):.4f})" for c in self.failures)

    def table(self) -> str:
        """A fixed-width table of every check, for logs."""
        lines = [f"gate: candidate {self.candidate} vs champion {self.champion or '(none)'}",
                 f"{'check':<34} {'value':>10} {'limit':>12} {'margin':>9}  result"]
        for c in self.checks:
            value = "n/a" if c.value is None else f"{c.value:.4f}"
            margin = "" if c.margin is None else f"{c.margin:+.4f}"
            lines.append(f"{c.name:<34} {value:>10} {c.op + ' ' + str(c.threshold):>12} "
                         f"{margin:>9}  {'PASS' if c.passed else 'FAIL'}")
        lines.append(f"verdict: {'PASS' if self.passed else 'FAIL'} ({self.reason()})")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"candidate": self.candidate, "champion": self.champion, "passed": self.passed,
                "reason": self.reason(), "report_dir": self.report_dir, "metrics": self.metrics,
                "checks": [asdict(c) | {"margin": c.margin} for c in self.checks]}


def _scored(version: ModelVersion, raw: pd.DataFrame) -> pd.DataFrame:
    from driftline.training import predict_proba

    schema = FeatureSchema.from_dict(version.metadata["feature_schema"])
    booster = version.load_booster()
    return pd.DataFrame({LABEL: raw[LABEL].astype(int).to_numpy(),
                         PROBA: predict_proba(booster, raw, schema)})


def _quality(scored: pd.DataFrame):
    from evidently import BinaryClassification, DataDefinition, Dataset

    definition = DataDefinition(
        classification=[BinaryClassification(target=LABEL, prediction_probas=PROBA)])
    return Dataset.from_pandas(scored, data_definition=definition)


def _metric_values(snapshot) -> dict[str, float]:
    wanted = {"RocAuc": "auc", "LogLoss": "logloss", "Accuracy": "accuracy", "F1Score": "f1",
              "Precision": "precision", "Recall": "recall"}
    values = {}
    for metric in snapshot.dict()["metrics"]:
        name = metric["metric_name"].split("(", 1)[0]
        if name in wanted and not isinstance(metric["value"], dict):
            values[wanted[name]] = float(metric["value"])
    return values


def feature_drift(current: pd.DataFrame, reference: pd.DataFrame, threshold: float,
                  html_path: Path | None = None, json_path: Path | None = None) -> dict:
    """Evidently data drift of ``current`` against ``reference`` over the model's features.

    :param threshold: per-column drift score above which a column counts as drifted.

    :return: ``{"share", "count", "columns": {name: drift score}, "drifted": [names]}``.
    """
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    from driftline.features import CATEGORICAL_FEATURES, NUMERIC_FEATURES

    definition = DataDefinition(numerical_columns=NUMERIC_FEATURES,
                                categorical_columns=CATEGORICAL_FEATURES)
    cur = Dataset.from_pandas(current[FEATURES].reset_index(drop=True), data_definition=definition)
    ref = Dataset.from_pandas(reference[FEATURES].reset_index(drop=True),
                              data_definition=definition)
    snapshot = Report([DataDriftPreset(threshold=threshold)], include_tests=True).run(
        cur, ref)
    if html_path:
        snapshot.save_html(str(html_path))
    if json_path:
        snapshot.save_json(str(json_path))
    return summarize_drift(snapshot.dict())


def summarize_drift(report: dict) -> dict:
    """Drifted-column count/share and per-column scores from an Evidently drift report."""
    summary = {"share": None, "count": None, "columns": {}, "drifted": []}
    for metric in report["metrics"]:
        name = metric["metric_name"]
        if name.startswith("DriftedColumnsCount"):
            summary["count"] = int(metric["value"]["count"])
            summary["share"] = float(metric["value"]["share"])
        elif name.startswith("ValueDrift"):
            column = metric["config"]["column"]
            summary["columns"][column] = float(metric["value"])
    for test in report.get("tests", []):
        column = test["metric_config"]["params"].get("column")
        if column and test["status"] == "FAIL":
            summary["drifted"].append(column)
    return summary


def run_gate(candidate: ModelVersion, champion: ModelVersion | None, limits: GateSettings,
             report_dir: Path, column_drift_threshold: float = 0.3) -> GateVerdict:
    """Compare ``candidate`` with ``champion`` and decide whether it may be deployed.

    Without a champion (first deploy) only the absolute quality floor applies.

    :param report_dir: where ``verdict.json``, ``quality.html`` and ``drift.html`` go.
    :param column_drift_threshold: per-column drift score for the training-data drift check.
    """
    from evidently import Report
    from evidently.presets import ClassificationPreset

    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    holdout = candidate.holdout()
    cand_scored = _scored(candidate, holdout)
    cand_snapshot = Report([ClassificationPreset()]).run(_quality(cand_scored))
    cand = _metric_values(cand_snapshot)
    checks = [GateCheck("candidate AUC on holdout", cand["auc"], ">=", limits.min_auc,
                        cand["auc"] >= limits.min_auc)]
    metrics: dict = {"candidate": cand, "holdout_rows": len(holdout)}

    if champion is None:
        cand_snapshot.save_html(str(report_dir / "quality.html"))
    else:
        champ_scored = _scored(champion, holdout)
        champ = _metric_values(Report([ClassificationPreset()]).run(_quality(champ_scored)))
        metrics["champion"] = champ
        Report([ClassificationPreset()]).run(
            _quality(cand_scored), _quality(champ_scored)).save_html(
            str(report_dir / "quality.html"))
        auc_drop = champ["auc"] - cand["auc"]
        checks.append(GateCheck("AUC drop vs champion", auc_drop, "<=", limits.max_auc_drop,
                                auc_drop <= limits.max_auc_drop,
                                f"champion {champ['auc']:.4f}, candidate {cand['auc']:.4f}"))
        ll_increase = cand["logloss"] - champ["logloss"]
        checks.append(GateCheck("log loss increase vs champion", ll_increase, "<=",
                                limits.max_logloss_increase,
                                ll_increase <= limits.max_logloss_increase,
                                f"champion {champ['logloss']:.4f}, "
                                f"candidate {cand['logloss']:.4f}"))
        drift = feature_drift(candidate.reference(), champion.reference(),
                              column_drift_threshold, html_path=report_dir / "drift.html",
                              json_path=report_dir / "drift.json")
        metrics["train_drift"] = drift
        checks.append(GateCheck("training-data drift share", drift["share"], "<=",
                                limits.max_train_drift_share,
                                drift["share"] <= limits.max_train_drift_share,
                                f"drifted: {', '.join(drift['drifted']) or 'none'}"))

    verdict = GateVerdict(candidate.version, champion.version if champion else None, checks,
                          str(report_dir), metrics)
    (report_dir / "verdict.json").write_text(json.dumps(verdict.to_dict(), indent=2))
    return verdict
