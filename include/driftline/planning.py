"""What a training run trains on: the plan, decided from how the run was started.

A run starts from new ingested data (an Asset event), by hand (the train DAG's Params, or a
REST/CLI conf), or from the retrain policy's sensor (a conf naming the drift or quality report
and the rule, :mod:`driftline.retraining`). :func:`plan_training`
turns that into one plan: data version, window, hyperparameters, reason. It refuses what it
cannot honour (:class:`PlanError`: an unknown option, a data version that does not exist, a
window outside the data) before anything runs, and says when scheduled retraining is not due
(:class:`NotDue`). The provider's plan task only adapts these to Airflow.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from driftline.hyperparameters import HYPERPARAMETER_SCHEMA, HYPERPARAMETERS

DATE = {"type": ["null", "string"], "format": "date"}
# Every option a run may be started with: the train DAG's Params (JSON schema + default).
TRAIN_OPTIONS: dict[str, dict[str, Any]] = {
    "window_start": {"default": None, **DATE,
                     "description": "First training day (default: window_end minus the "
                                    "window length)"},
    "window_end": {"default": None, **DATE, "description": "Last training day (default: newest)"},
    "window_days": {"default": None, "type": ["null", "integer"], "minimum": 16,
                    "maximum": 3660},
    "data_version": {"default": None, "type": ["null", "string"], "pattern": "^[0-9a-f]{7,40}$",
                     "description": "Data repo commit (default: newest)"},
    "hyperparameters": {"default": {}, "type": "object", "properties": HYPERPARAMETER_SCHEMA,
                        "additionalProperties": False},
    "reason": {"default": "", "type": "string", "maxLength": 500},
    "retrain_every_days": {"default": None, "type": ["null", "integer"], "minimum": 1,
                           "description": "New data retrains every N days after the "
                                          "champion's window (default: [retrain] "
                                          "cadence_days when the cadence rule is on)"},
    "drift_report_id": {"default": None, "type": ["null", "string"],
                        "description": "Set by the retrain policy: the drift report"},
    "quality_report_id": {"default": None, "type": ["null", "string"],
                          "description": "Set by the retrain policy: the live-quality report"},
}


class PlanError(ValueError):
    """The run asks for something that cannot be trained; retrying will not help."""


class NotDue(Exception):
    """Scheduled retraining is not due yet: the run should be skipped."""


def check_options(conf: dict) -> None:
    """Refuse options no run understands (a typo would otherwise be ignored silently).

    :raises PlanError: naming the unknown keys and the accepted ones.
    """
    unknown = sorted(set(conf) - set(TRAIN_OPTIONS))
    if unknown:
        hint = [k for k in unknown if k in HYPERPARAMETERS]
        extra = (f"; {hint} are hyperparameters: put them under \"hyperparameters\""
                 if hint else "")
        raise PlanError(f"unknown option(s) {unknown} in the run's conf; accepted: "
                        f"{list(TRAIN_OPTIONS)}{extra}")
    unknown_hp = sorted(set(conf.get("hyperparameters") or {}) - set(HYPERPARAMETERS))
    if unknown_hp:
        raise PlanError(f"unknown hyperparameter(s) {unknown_hp}; accepted: "
                        f"{list(HYPERPARAMETERS)}")


def trigger_of(conf: dict, asset_events: list[dict]) -> str:
    """``asset`` (new data, no conf), ``drift`` or ``quality`` (the retrain policy's conf
    naming that report) or ``manual``."""
    if asset_events and not conf:
        return "asset"
    if conf.get("drift_report_id"):
        return "drift"
    return "quality" if conf.get("quality_report_id") else "manual"


def plan_training(ws, repo, params: dict, conf: dict, asset_events: list[dict],
                  log=None) -> dict:
    """The plan of one training run.

    :param ws: the pack's :class:`~driftline.workspace.Workspace`.
    :param repo: its :class:`~driftline.versioning.DataRepo`.
    :param params: the run's resolved Params (defaults included).
    :param conf: what the run was started with (manual conf or the retrain policy sensor's).
    :param asset_events: the ``extra`` of each triggering ingest Asset event.
    :param log: where to say why a window was adjusted (a logger); optional.
    :raises PlanError: unknown options, unknown data version, a window outside the data.
    :raises NotDue: an asset-triggered run whose scheduled retraining is not due.
    """
    check_options(conf)
    options = {**params, **{k: v for k, v in conf.items() if v not in (None, "")}}
    trigger = trigger_of(conf, asset_events)
    newest = max(asset_events, key=lambda e: e.get("day", "")) if asset_events else None
    data_version = _data_version(repo, options.get("data_version")
                                 or (newest or {}).get("data_version"))
    available = repo.list_days(data_version)
    if not available:
        raise PlanError(f"data version {data_version[:12]} has no partitions")
    first_day, newest_day = available[0], _last_day(ws.pack, available[-1])
    start, end = _window(ws, options, newest, newest_day, trigger, data_version, first_day, log)
    due = due_or_raise(ws, end, _cadence(ws, options)) if trigger == "asset" else None
    reason = options.get("reason") or {
        "asset": f"new data: {len(asset_events)} partition event(s) up to {end}"
                 + (f"; {due}" if due else ""),
        "drift": f"drift report {conf.get('drift_report_id')}",
        "quality": f"quality report {conf.get('quality_report_id')}",
        "manual": "manual trigger",
    }[trigger]
    return {"pack": ws.name, "data_version": data_version, "start": start.isoformat(),
            "end": end.isoformat(), "params": options.get("hyperparameters") or {},
            "reason": reason, "trigger": trigger}


def _data_version(repo, asked: str | None) -> str:
    if not asked:
        return repo.head()
    resolved = repo.resolve(asked)
    if resolved is None:
        raise PlanError(f"data version {asked!r} is not a commit of the data repository "
                        f"(newest: {repo.head()[:12]})")
    return resolved


def _window(ws, options: dict, newest: dict | None, newest_day: dt.date, trigger: str,
            data_version: str, first_day: dt.date, log) -> tuple[dt.date, dt.date]:
    """``[start, end]``: the user's own dates are honoured or refused, never clamped; a
    derived end (a drift report's month still being ingested) is moved to the newest data."""
    asked_end = options.get("window_end")
    span = f"{first_day}..{newest_day} at data version {data_version[:12]}"
    if asked_end:
        end = dt.date.fromisoformat(asked_end)
        if end > newest_day:
            if trigger not in ("drift", "quality"):
                raise PlanError(f"window_end {end} is after the newest data ({span})")
            if log:
                log.info("window end %s is past the newest partition's last day; using %s",
                         end, newest_day)
            end = newest_day
    else:
        end = _last_day(ws.pack, dt.date.fromisoformat(newest["day"])) if newest else newest_day
    window_days = int(options.get("window_days") or ws.training.window_days)
    asked_start = options.get("window_start")
    start = (dt.date.fromisoformat(asked_start) if asked_start
             else end - dt.timedelta(days=window_days - 1))
    if start > end:
        raise PlanError(f"window_start {start} is after window_end {end}")
    if end < first_day:
        raise PlanError(f"window {start}..{end} holds no data ({span})")
    return start, end


def _cadence(ws, options: dict) -> int | None:
    """The run's ``retrain_every_days``, else the pack's cadence rule's days (if on)."""
    if options.get("retrain_every_days"):
        return int(options["retrain_every_days"])
    return ws.retrain.cadence_days if "cadence" in ws.retrain.on else None


def due_or_raise(ws, end: dt.date, every_days: int | None) -> str | None:
    """Return when an asset-triggered run should train: None when there is no champion yet
    (bootstrap), else the cadence rule's reason (``every_days`` since the champion's window
    end).

    :raises NotDue: saying why and when it will be due.
    """
    from driftline.registry import Registry

    champion = Registry(ws.registry_dir, ws.model_name).champion()
    if champion is None:
        return None
    if every_days is None:
        raise NotDue(f"champion {champion.version} is live and scheduled retraining is off "
                     "(the cadence rule in [retrain], or the retrain_every_days param); the "
                     "retrain policy's drift and quality rules or a manual trigger retrain")
    trained_until = dt.date.fromisoformat(champion.metadata["window"]["end"])
    if (end - trained_until).days < int(every_days):
        raise NotDue(f"champion {champion.version} was trained up to {trained_until}; next "
                     f"scheduled retraining after "
                     f"{trained_until + dt.timedelta(days=int(every_days))}")
    return (f"cadence rule: {(end - trained_until).days} days of data since champion "
            f"{champion.version}'s window end {trained_until} (every {every_days})")


def _last_day(pack, start: dt.date) -> dt.date:
    """The last day of the pack's data interval that starts on ``start``."""
    return pack.interval_end(start) - dt.timedelta(days=1)


def training_command(plan: dict) -> list[str]:
    """The training entrypoint's arguments for a plan (the local and Kubernetes paths both
    run exactly these)."""
    return ["-m", "driftline.training", "--pack", plan["pack"],
            "--data-version", plan["data_version"],
            "--start", plan["start"], "--end", plan["end"],
            "--params", json.dumps(plan.get("params") or {}), "--reason", plan.get("reason", "")]


def pod_training_command(plan: dict, pack: str, gpus: int, data_repo_url: str = "") -> list[str]:
    """The training entrypoint's arguments in a pod: :func:`training_command`, plus
    ``--data-repo`` when the pod clones the data repository from a URL.

    A pod that is given GPUs trains on ``cuda`` unless the plan names a device, so a GPU pod
    never quietly trains on its CPU (the entrypoint fails if no GPU is visible).

    :raises PlanError: the plan is another pack's (the pod is named and labelled after
        ``pack``).
    """
    if plan.get("pack") != pack:
        raise PlanError(f"the plan is for pack {plan.get('pack')!r}, but this task trains "
                        f"pack {pack!r}")
    params = plan.get("params") or {}
    if gpus and "device" not in params:
        plan = {**plan, "params": {**params, "device": "cuda"}}
    args = training_command(plan)
    if data_repo_url:
        args += ["--data-repo", data_repo_url]
    return args
