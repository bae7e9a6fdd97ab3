"""The promotion gate: a candidate model against the live champion, with Evidently reports.

Both models predict the *same* rows (the candidate's time holdout), so their quality is
compared like for like: Evidently's classification preset for binary packs, its regression
preset for regression packs. The pack's ``[gate]`` says which metrics have floors and how
much worse than the champion each may be, and how a paired bootstrap interval of candidate
minus champion on the primary metric decides (``significance``: refuse a candidate
significantly worse, or require one significantly better). A second report compares the
candidate's training features with the champion's reference data. A champion trained under
another label definition is not compared as if like for like (see :func:`run_gate`). Every
check records its value and threshold; the verdict is kept as ``verdict.json`` and
``verdict.html`` beside Evidently's HTML reports per run, and :meth:`GateVerdict.table` is
what the task log shows.
"""

from __future__ import annotations

import html
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from driftline.drift import feature_drift
from driftline.features import FeatureSchema
from driftline.packs import Pack
from driftline.packs.spec import HIGHER_IS_BETTER, METRIC_LABELS
from driftline.registry import ModelVersion
from driftline.scoring import predict
from driftline.settings import GateSettings
from driftline.significance import PairedDifference, paired_difference

TARGET = "target"
PREDICTION = "prediction"


@dataclass(frozen=True)
class GateCheck:
    """One gate check: ``value`` compared with ``threshold`` by ``op``; ``statistics`` holds
    the interval a statistical check decided on (:class:`PairedDifference` fields)."""

    name: str
    value: float | None
    op: str
    threshold: float
    passed: bool
    detail: str = ""
    statistics: dict | None = None

    @property
    def margin(self) -> float | None:
        """How far inside (positive) or outside (negative) the threshold the value is."""
        if self.value is None:
            return None
        if self.op in ("<=", "<"):
            return self.threshold - self.value
        return self.value - self.threshold


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
                         f"(off by {abs(c.margin):.4f}{_also(c)})" if c.margin is not None
                         else f"{c.name}: {c.detail}" for c in self.failures)

    def table(self) -> str:
        """A fixed-width table of every check, for logs; a statistical check's interval,
        p-value and rows on the line below it."""
        lines = [f"gate: candidate {self.candidate} vs champion {self.champion or '(none)'}",
                 f"{'check':<34} {'value':>10} {'limit':>12} {'margin':>9}  result"]
        for c in self.checks:
            value = "n/a" if c.value is None else f"{c.value:.4f}"
            margin = "" if c.margin is None else f"{c.margin:+.4f}"
            lines.append(f"{c.name:<34} {value:>10} {c.op + ' ' + str(c.threshold):>12} "
                         f"{margin:>9}  {'PASS' if c.passed else 'FAIL'}")
            if c.statistics:
                lines.append(f"    {c.detail}")
        lines.append(f"verdict: {'PASS' if self.passed else 'FAIL'} ({self.reason()})")
        return "\n".join(lines)

    def html(self) -> str:
        """The verdict as a page: every check, a statistical check's interval, p-value and
        rows, and links to Evidently's reports."""
        rows = "".join(_html_row(c) for c in self.checks)
        links = " ".join(f"<a href='{name}'>{name}</a>" for name in ("quality.html", "drift.html")
                         if (Path(self.report_dir) / name).exists())
        title = html.escape(f"gate: {self.candidate} vs {self.champion or '(none)'}")
        return (f"<!doctype html><meta charset='utf-8'><title>{title}</title><h1>{title}</h1>"
                f"<p><b>{'PASS' if self.passed else 'FAIL'}</b>: {html.escape(self.reason())}"
                "</p><table border='1' cellpadding='4'><tr><th>check</th><th>value</th>"
                "<th>limit</th><th>margin</th><th>result</th><th>detail</th></tr>"
                f"{rows}</table><p>{links}</p>")

    def to_dict(self) -> dict:
        return {"candidate": self.candidate, "champion": self.champion, "passed": self.passed,
                "reason": self.reason(), "report_dir": self.report_dir, "metrics": self.metrics,
                "checks": [asdict(c) | {"margin": c.margin} for c in self.checks]}


def _html_row(c: GateCheck) -> str:
    cells = (c.name, "n/a" if c.value is None else f"{c.value:.4f}", f"{c.op} {c.threshold}",
             "" if c.margin is None else f"{c.margin:+.4f}", "PASS" if c.passed else "FAIL",
             c.detail)
    return "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in cells) + "</tr>"


def _also(check: GateCheck) -> str:
    """A statistical check's interval, for the one-line reason."""
    return f", {check.detail}" if check.statistics else ""


def score_rows(pack: Pack, version: ModelVersion, raw: pd.DataFrame) -> pd.DataFrame:
    """``raw``'s label (``target``) and ``version``'s output (``prediction``), row by row."""
    schema = FeatureSchema.from_dict(version.metadata["feature_schema"])
    target = pack.label(raw).to_numpy()
    if pack.task == "binary":
        target = target.astype(int)
    return pd.DataFrame({TARGET: target,
                         PREDICTION: predict(pack, version.load_booster(), raw, schema)})


def quality_dataset(pack: Pack, scored: pd.DataFrame):
    """An Evidently dataset of scored rows with the pack's task declared."""
    from evidently import BinaryClassification, DataDefinition, Dataset, Regression

    if pack.task == "binary":
        definition = DataDefinition(classification=[
            BinaryClassification(target=TARGET, prediction_probas=PREDICTION)])
    else:
        definition = DataDefinition(regression=[Regression(target=TARGET,
                                                           prediction=PREDICTION)])
    return Dataset.from_pandas(scored, data_definition=definition)


def quality_preset(pack: Pack):
    """Evidently's classification or regression preset, per the pack's task."""
    from evidently.presets import ClassificationPreset, RegressionPreset

    return ClassificationPreset() if pack.task == "binary" else RegressionPreset()


_EVIDENTLY_METRICS = {"RocAuc": "auc", "LogLoss": "logloss", "Accuracy": "accuracy",
                      "F1Score": "f1", "Precision": "precision", "Recall": "recall",
                      "RMSE": "rmse", "MAE": "mae", "R2Score": "r2"}


def metric_values(snapshot) -> dict[str, float]:
    """driftline's metric names and values from an Evidently quality snapshot."""
    values = {}
    for metric in snapshot.dict()["metrics"]:
        name = metric["metric_name"].split("(", 1)[0]
        value = metric["value"]
        if isinstance(value, dict):  # MAE carries {"mean", "std"}
            value = value.get("mean")
        if name in _EVIDENTLY_METRICS and value is not None:
            values[_EVIDENTLY_METRICS[name]] = float(value)
    return values


def _label(metric: str) -> str:
    return METRIC_LABELS.get(metric, metric)


def _floor_check(metric: str, value: float, floor: float) -> GateCheck:
    higher = metric in HIGHER_IS_BETTER
    passed = value >= floor if higher else value <= floor
    return GateCheck(f"candidate {_label(metric)} on holdout", value, ">=" if higher else "<=",
                     floor, passed)


def _worsening_check(metric: str, candidate: float, champion: float, limit: float) -> GateCheck:
    higher = metric in HIGHER_IS_BETTER
    worse = champion - candidate if higher else candidate - champion
    name = f"{_label(metric)} {'drop' if higher else 'increase'} vs champion"
    return GateCheck(name, worse, "<=", limit, worse <= limit,
                     f"champion {champion:.4f}, candidate {candidate:.4f}")


def significance_check(policy: str, diff: PairedDifference) -> GateCheck:
    """The interval of candidate minus champion against ``policy``, minding the metric's
    direction: ``refuse_worse`` fails when the whole interval is worse than 0,
    ``require_better`` unless the whole interval is better.

    :param policy: ``refuse_worse`` or ``require_better``.
    """
    higher = diff.metric in HIGHER_IS_BETTER
    if policy == "refuse_worse":  # the bound nearest to "better" must reach 0
        high = higher
        op = ">=" if higher else "<="
    else:  # the bound nearest to "worse" must be past 0
        high = not higher
        op = ">" if higher else "<"
    bound = diff.high if high else diff.low
    passed = {">=": bound >= 0, "<=": bound <= 0, ">": bound > 0, "<": bound < 0}[op]
    name = (f"{_label(diff.metric)} vs champion, {diff.confidence:.0%} CI "
            f"{'high' if high else 'low'}")
    return GateCheck(name, bound, op, 0.0, passed, f"{diff.describe()}, policy {policy}",
                     asdict(diff))


def same_label(candidate: ModelVersion, champion: ModelVersion) -> bool:
    """Whether both models learned the same label definition (recorded at training)."""
    theirs = (champion.metadata.get("pack") or {}).get("label_digest")
    ours = (candidate.metadata.get("pack") or {}).get("label_digest")
    return theirs == ours


def run_gate(pack: Pack, candidate: ModelVersion, champion: ModelVersion | None,
             limits: GateSettings, report_dir: Path,
             column_drift_threshold: float = 0.3) -> GateVerdict:
    """Compare ``candidate`` with ``champion`` and decide whether it may be deployed.

    Without a champion (first deploy) only the floors apply. A champion trained under
    another label definition is not comparable: the gate refuses (check "label definition
    same as champion") unless ``allow_label_change``, in which case only the floors apply
    and the verdict says why.

    :param report_dir: where ``verdict.json``, ``verdict.html``, ``quality.html`` and
        ``drift.html`` go.
    :param column_drift_threshold: per-column drift score for the training-data drift check.
    """
    from evidently import Report

    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    holdout = candidate.holdout()
    cand_scored = score_rows(pack, candidate, holdout)
    cand_snapshot = Report([quality_preset(pack)]).run(quality_dataset(pack, cand_scored))
    cand = metric_values(cand_snapshot)
    checks = [_floor_check(m, cand[m], floor) for m, floor in limits.floors.items()]
    metrics: dict = {"candidate": cand, "holdout_rows": len(holdout), "metric": pack.metric}

    comparable = champion is not None and same_label(candidate, champion)
    if champion is not None and not comparable:
        metrics["label_changed"] = True
        checks.append(GateCheck(
            "label definition same as champion", None, "==", 1.0, limits.allow_label_change,
            f"{champion.version} was trained under another label definition; "
            + ("allowed by [gate] allow_label_change: only the floors apply"
               if limits.allow_label_change else
               "its metrics are not comparable (set [gate] allow_label_change = true to "
               "promote on the floors alone)")))
    if champion is None or not comparable:
        cand_snapshot.save_html(str(report_dir / "quality.html"))
    else:
        champ_scored = score_rows(pack, champion, holdout)
        champ = metric_values(Report([quality_preset(pack)]).run(
            quality_dataset(pack, champ_scored)))
        metrics["champion"] = champ
        Report([quality_preset(pack)]).run(
            quality_dataset(pack, cand_scored), quality_dataset(pack, champ_scored)).save_html(
            str(report_dir / "quality.html"))
        checks += [_worsening_check(m, cand[m], champ[m], limit)
                   for m, limit in limits.max_worsening.items()]
        if limits.significance != "off":
            diff = paired_difference(pack.metric, cand_scored[TARGET], cand_scored[PREDICTION],
                                     champ_scored[PREDICTION], limits.confidence)
            checks.append(significance_check(limits.significance, diff))
        drift = feature_drift(pack, candidate.reference(), champion.reference(),
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
    (report_dir / "verdict.html").write_text(verdict.html())
    return verdict
