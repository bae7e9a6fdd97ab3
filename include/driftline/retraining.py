"""The retrain policy: which monitored interval starts a retraining, by which rule, and why.

Each monitored interval has a drift report (:mod:`driftline.monitoring`) and, once its
outcomes land, a live-quality report (:mod:`driftline.outcomes`). The pack's ``[retrain]``
settings say which rules may start a retraining:

- ``drift``: the interval's drifted-column share reaches ``[monitor] drift_share_threshold``;
- ``quality``: the live model's primary metric on the interval's outcomes is worse than its
  holdout figure by more than ``[monitor] max_quality_drop`` (inert without a limit);
- ``cadence``: new data retrains every ``cadence_days`` after the champion's training window
  (decided by :func:`driftline.planning.due_or_raise` when ingest publishes data).

For the report-driven rules, :func:`decisions` gives one decision per interval, oldest first.
An interval triggers when a rule crossed in it and in the ``consecutive - 1`` reports of that
rule before it, all measured against today's champion (reports of a replaced model are
*superseded*), when it ends more than ``cooldown_days`` after the last retrain's interval (or
the champion's training data), and when nothing claimed it yet. Only the newest such interval
triggers; older ones are *passed over*. The sensor claims the interval (an exclusive file
create under ``reports/<pack>/retrain/``) before it starts the train DAG, so one interval
starts at most one retraining, whatever reruns or sensors race.

A retrain that the gate refuses leaves the champion in place and its interval claimed: the
same reports never trigger again, and the next trigger is the next interval that crosses
past the cooldown. Everything here is a function of the report files, so backfills and
reruns decide the same.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from driftline.monitoring import drift_dir, list_drift_reports
from driftline.outcomes import MEASURED, list_quality_reports
from driftline.registry import Registry
from driftline.workspace import Workspace

REPORT_RULES = ("drift", "quality")
RETRAIN, CLAIMED, BELOW, WAITING, COOLDOWN, PASSED_OVER, SUPERSEDED = (
    "retrain", "claimed", "below", "waiting", "cooldown", "passed over", "superseded")


@dataclass(frozen=True)
class Observation:
    """One rule's figure in one interval.

    :param rule: ``drift`` or ``quality``.
    :param report_id: the report the figure comes from.
    :param figure: drifted-column share, or the primary metric's drop below the holdout.
    :param limit: what the figure is compared with (None: the rule has no limit).
    :param crossed: ``figure`` reached (drift) or passed (quality) ``limit``.
    :param model_version: the model the report measured.
    """

    rule: str
    report_id: str
    start: str
    end: str
    figure: float
    limit: float | None
    crossed: bool
    model_version: str | None
    metric: str = ""
    """The quality rule's metric."""

    def describe(self) -> str:
        """The report, its figure and the limit, e.g. ``drift report drift_... share 0.438
        >= 0.35``."""
        if self.rule == "drift":
            return (f"drift report {self.report_id} share {self.figure:.3f} "
                    f"{'>=' if self.crossed else '<'} {self.limit}")
        limit = "no limit set" if self.limit is None else (
            f"{'>' if self.crossed else '<='} limit {self.limit}")
        return (f"quality report {self.report_id} {self.metric} {self.figure:+.4f} worse "
                f"than {self.model_version}'s holdout ({limit})")


@dataclass(frozen=True)
class Decision:
    """What the policy makes of one interval.

    :param action: ``retrain`` (due now), ``claimed`` (it started a retraining), ``below``,
        ``waiting`` (crossed, fewer consecutive crossings than required), ``cooldown``,
        ``passed over`` (a newer interval triggered) or ``superseded`` (its reports measured
        a model that is no longer the champion).
    :param observations: each rule's figure in the interval.
    :param crossing: the rules whose figures count toward a retrain (crossed, consecutive).
    :param reason: one line a person reads: which reports, figures and rule.
    :param claim: the claim record, when the interval started a retraining.
    """

    start: str
    end: str
    action: str
    reason: str
    observations: list[Observation] = field(default_factory=list)
    crossing: list[Observation] = field(default_factory=list)
    claim: dict | None = None

    def report_id(self, rule: str) -> str | None:
        """The report of ``rule`` that counts toward this interval's retrain, if any."""
        return next((o.report_id for o in self.crossing if o.rule == rule), None)

    def to_dict(self) -> dict:
        return asdict(self)


def retrain_dir(ws: Workspace) -> Path:
    return ws.reports_dir / "retrain"


def observations(ws: Workspace) -> list[Observation]:
    """Every report's figure under each report-driven rule, oldest interval first."""
    threshold = ws.monitor.drift_share_threshold
    found = [Observation("drift", r["report_id"], r["start"], r["end"], float(r["share"]),
                         threshold, r["share"] >= threshold, r.get("model_version"))
             for r in list_drift_reports(drift_dir(ws))]
    limit = ws.monitor.max_quality_drop.get(ws.pack.metric)
    found += [Observation("quality", q["report_id"], q["start"], q["end"], float(q["drop"]),
                          limit, limit is not None and q["drop"] > limit, q["model_version"],
                          q["metric"])
              for q in list_quality_reports(ws) if q["status"] == MEASURED]
    return sorted(found, key=lambda o: (o.end, o.start, o.rule))


def list_claims(ws: Workspace) -> dict[tuple[str, str], dict]:
    """Every claimed interval's record by ``(start, end)``."""
    claims = {}
    for path in sorted(retrain_dir(ws).glob("*.json")):
        record = json.loads(path.read_text())
        claims[(record["start"], record["end"])] = record
    return claims


def decisions(ws: Workspace) -> list[Decision]:
    """The policy's decision on every monitored interval, oldest first (see the module)."""
    policy = ws.retrain
    champion = Registry(ws.registry_dir, ws.model_name).champion()
    live = champion.version if champion else None
    claims = list_claims(ws)
    by_interval: dict[tuple[str, str], list[Observation]] = {}
    for obs in observations(ws):
        by_interval.setdefault((obs.start, obs.end), []).append(obs)
    runs = dict.fromkeys(REPORT_RULES, 0)  # consecutive crossings against the champion
    counted: dict[tuple[str, str], list[Observation]] = {}
    for key, found in by_interval.items():
        for obs in found:
            if obs.rule in policy.on and _measured_live(obs, live):
                runs[obs.rule] = runs[obs.rule] + 1 if obs.crossed else 0
                if runs[obs.rule] >= policy.consecutive:
                    counted.setdefault(key, []).append(obs)
        if key in claims:  # a retrain attempt starts the count again
            runs = dict.fromkeys(REPORT_RULES, 0)
    due = [key for key in counted if key not in claims]
    newest_due = max(due, key=lambda k: k[1]) if due else None
    trained_until = champion.metadata["window"]["end"] if champion else None
    after = max(filter(None, (max((k[1] for k in claims), default=None), trained_until)),
                default=None)
    return [Decision(key[0], key[1], *_action(ws, key, found, counted.get(key, []), claims,
                                              live, after, newest_due),
                     observations=found, crossing=counted.get(key, []), claim=claims.get(key))
            for key, found in by_interval.items()]


def _action(ws: Workspace, key: tuple[str, str], found: list[Observation],
            crossing: list[Observation], claims: dict, live: str | None, after: str | None,
            newest_due: tuple[str, str] | None) -> tuple[str, str]:
    """The decision on one interval and its reason."""
    policy = ws.retrain
    runs_needed = policy.consecutive
    rules = [o for o in found if o.rule in policy.on]
    figures = "; ".join(o.describe() for o in rules) or "no report of an enabled rule"
    if key in claims:
        return CLAIMED, f"started retraining ({claims[key]['by']}): {claims[key]['reason']}"
    if rules and not any(_measured_live(o, live) for o in rules):
        return SUPERSEDED, (f"measured {rules[0].model_version}, no longer the champion "
                            f"({live}): {figures}")
    if not crossing:
        crossed = [o for o in rules if o.crossed]
        if crossed:
            return WAITING, (f"{figures} (fewer than {runs_needed} consecutive crossings)")
        return BELOW, figures
    if after is not None and key[1] <= after:
        return PASSED_OVER, f"a later retrain covers it (up to {after}): {figures}"
    ready = (dt.date.fromisoformat(after) + dt.timedelta(days=policy.cooldown_days)
             if after else None)
    if ready is not None and key[1] <= ready.isoformat():
        return COOLDOWN, (f"cooldown: {policy.cooldown_days} days after {after}, until "
                          f"{ready}: {figures}")
    if key != newest_due:
        return PASSED_OVER, f"a newer interval ({newest_due and newest_due[1]}) is due: {figures}"
    return RETRAIN, _reason(crossing, runs_needed)


def _measured_live(obs: Observation, live: str | None) -> bool:
    """Whether ``obs`` measured today's champion (or there is none to compare with)."""
    return live is None or obs.model_version in (None, live)


def _reason(crossing: list[Observation], runs_needed: int) -> str:
    times = f" ({runs_needed} consecutive)" if runs_needed > 1 else ""
    return "retrain policy: " + "; ".join(
        f"{o.rule} rule{times}: {o.describe()}" for o in crossing)


def next_trigger(ws: Workspace) -> Decision | None:
    """The interval that should start a retraining now, or None."""
    return next((d for d in decisions(ws) if d.action == RETRAIN), None)


def claim_interval(ws: Workspace, decision: Decision, claimant: str) -> bool:
    """Record that ``decision``'s interval started a retraining. Only the first caller gets
    ``True``; a rerun or a second sensor gets ``False`` and must not trigger."""
    folder = retrain_dir(ws)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{decision.start}_{decision.end}.json"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    record = {"start": decision.start, "end": decision.end, "by": claimant,
              "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
              "reason": decision.reason, "rules": [o.rule for o in decision.crossing],
              "drift_report_id": decision.report_id("drift"),
              "quality_report_id": decision.report_id("quality"),
              "figures": [asdict(o) for o in decision.crossing]}
    with os.fdopen(fd, "w") as fh:
        json.dump(record, fh, indent=2)
    return True


def train_conf(decision: Decision) -> dict:
    """The train DAG's conf for a retraining ``decision`` starts (empty strings, not None,
    for the absent report: a conf renders through templates as text)."""
    return {"reason": decision.reason, "drift_report_id": decision.report_id("drift") or "",
            "quality_report_id": decision.report_id("quality") or "",
            "window_end": decision.end}
