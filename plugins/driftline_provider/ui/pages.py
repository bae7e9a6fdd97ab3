"""What each driftline page shows, assembled from the core's view of a pack
(:func:`driftline.overview.collect`) and Airflow's own record of the runs behind it.

Every URL here is relative to the Airflow UI's root (``root``: ``../`` from the index,
``../../`` from a pack page), so the pages work behind a proxy prefix.
"""

from __future__ import annotations

from urllib.parse import quote

from driftline_provider.ui.charts import Bar, Point, bar_chart, line_chart

LOOP_STAGES = ("ingest", "train", "gate", "deploy", "monitor")


def dag_url(root: str, dag_id: str) -> str:
    return f"{root}dags/{quote(dag_id, safe='')}"


def run_url(root: str, dag_id: str, run_id: str, task_id: str | None = None) -> str:
    url = f"{dag_url(root, dag_id)}/runs/{quote(run_id, safe='')}"
    return f"{url}/tasks/{quote(task_id, safe='')}" if task_id else url


def report_url(root: str, pack: str, *parts: str) -> str:
    path = "/".join(quote(p) for part in parts for p in part.split("/") if p)
    return f"{root}driftline/reports/{quote(pack, safe='')}/{path}"


def model_chart(view: dict, root: str) -> str:
    """The primary metric of every model version in registration order, champion marked;
    each point opens the version's lineage row."""
    metric = view["metric"]
    points = [Point(m["version"], m["value"],
                    f"{m['version']}: {metric} {m['value']:.4f} (window "
                    f"{m['window']['start']}..{m['window']['end']}; {m['reason'] or 'no reason'})"
                    + (" - champion" if m["version"] == view["champion"] else ""),
                    marked=m["version"] == view["champion"], href=f"#model-{m['version']}")
              for m in view["models"] if m["value"] is not None]
    return line_chart(points, title=f"{view['pack']}: holdout {metric} per model version",
                      y_label=metric, css_class="chart models")


def drift_chart(view: dict, root: str) -> str:
    """Drifted-column share per monitored interval against the threshold; crossings marked,
    each point a link to its report."""
    points = [Point(d["end"], d["share"],
                    f"{d['start']}..{d['end']}: share {d['share']:.3f} vs threshold "
                    f"{d['threshold']}{' - CROSSED' if d['crossed'] else ''}",
                    marked=d["crossed"], href=f"#drift-{d['report_id']}")
              for d in view["drift"]]
    threshold = view["drift"][-1]["threshold"] if view["drift"] else None
    return line_chart(points, title=f"{view['pack']}: drifted-column share per interval",
                      y_label="drift share", threshold=threshold,
                      threshold_label="retrain threshold", css_class="chart drift")


def quality_chart(view: dict) -> str:
    """The live model's primary metric per interval once its outcomes landed (pending
    intervals break the line), against the live model's holdout figure; crossings marked."""
    metric = view["metric"]
    points = [Point(q["end"], q.get("value"),
                    f"{q['start']}..{q['end']}: " + (
                        f"pending ({q['reason']})" if q["status"] == "pending" else
                        f"{metric} {q['value']:.4f} vs holdout {q['baseline']:.4f} "
                        f"({q['model_version']}){' - CROSSED' if q['crossed'] else ''}"),
                    marked=bool(q.get("crossed")), href=f"#quality-{q['report_id']}")
              for q in view.get("quality", [])]
    measured = [q for q in view.get("quality", []) if q["status"] == "measured"]
    baseline = measured[-1]["baseline"] if measured else None
    if not measured:
        return ""
    return line_chart(points, title=f"{view['pack']}: live {metric} per interval",
                      y_label=f"live {metric}", threshold=baseline,
                      threshold_label=f"holdout {metric} of {measured[-1]['model_version']}",
                      css_class="chart quality")


def quality_rows(view: dict, root: str) -> list[dict]:
    """Every interval's live quality, newest first, with its report links."""
    pack = view["pack"]
    return [{**q, "url": q["report"] and report_url(root, pack, q["report_path"], q["report"]),
             "summary_url": report_url(root, pack, q["report_path"], "summary.json")}
            for q in reversed(view.get("quality", []))]


def column_chart(dataset: dict, threshold: float | None, title: str) -> str:
    """Each column's drift score in a report, drifted columns flagged."""
    bars = [Bar(column, score, f"{column}: {score:.3f}"
                + (" - drifted" if column in dataset["drifted"] else ""),
                flagged=column in dataset["drifted"])
            for column, score in sorted(dataset["columns"].items(), key=lambda kv: -kv[1])]
    return bar_chart(bars, title=title, threshold=threshold, css_class="chart columns")


def lineage(view: dict, runs: dict, root: str) -> list[dict]:
    """Per model version, newest first: data version → ingest run → training run (and what
    triggered it) → gate verdict → deploy, each step with its link where Airflow has it."""
    pack = view["pack"]
    gates = {g["candidate"]: g for g in view["gates"]}
    deploys: dict[str, dict] = {}
    for record in view["serving"].get("history", []):
        if record.get("action") == "deploy":
            deploys.setdefault(record["version"], record)
    train_runs = {(r["dag_id"], r["run_id"]): r for r in runs["runs"]}
    rows = []
    for m in reversed(view["models"]):
        ingest = runs["by_data_version"].get(m["data_version"])
        train = runs["by_model"].get(m["sha256"])
        run = train and train_runs.get((train["dag_id"], train["run_id"]))
        conf = (run or {}).get("conf", {})
        gate = gates.get(m["version"])
        row = {
            "version": m["version"], "champion": m["version"] == view["champion"],
            "metric_value": m["value"], "window": m["window"], "reason": m["reason"],
            "registered_at": m["registered_at"], "device": m["device"],
            "data_version": m["data_version"],
            "ingest_url": ingest and run_url(root, ingest["dag_id"], ingest["run_id"],
                                             ingest["task_id"]),
            "train_run": train and train["run_id"],
            "train_url": train and run_url(root, train["dag_id"], train["run_id"], "train"),
            "trigger": _trigger(pack, conf, root),
            "gate": gate and {"passed": gate["passed"], "reason": gate["reason"],
                              "url": f"#gate-{gate['candidate']}"},
            "gate_task_url": train and gate and run_url(root, train["dag_id"], train["run_id"],
                                                        "gate"),
            "deploy": deploys.get(m["version"]),
            "deploy_url": train and run_url(root, train["dag_id"], train["run_id"], "deploy"),
            "deploy_state": ((run or {}).get("tasks", {}).get("deploy") or {}).get("state"),
        }
        rows.append(row)
    return rows


def _trigger(pack: str, conf: dict, root: str) -> dict | None:
    """What started a training run, from its conf: the retrain policy (its reason, linked
    to the drift or quality report) or a person."""
    for kind in ("drift", "quality"):
        report_id = conf.get(f"{kind}_report_id")
        if report_id:
            return {"kind": kind, "text": conf.get("reason") or f"{kind} report {report_id}",
                    "url": f"#{kind}-{report_id}"}
    if conf:
        return {"kind": "manual", "text": ", ".join(f"{k}={v}" for k, v in conf.items()
                                                    if v not in (None, "")),
                "url": None}
    return None


def stage_times(runs: dict) -> dict:
    """Median seconds per loop stage and their sum (a run's T_total = sum of T_i)."""
    medians = {stage: runs["stages"].get(stage) for stage in LOOP_STAGES}
    known = [v for v in medians.values() if v is not None]
    return {"medians": medians, "total": round(sum(known), 1) if known else None}


def serving_history(view: dict) -> list[dict]:
    """Switches, rollbacks, auto-rollbacks, failovers and restarts, newest first, each with
    its extra figures (verification time, shadow results) as ``details``."""
    fixed = {"at", "action", "from_slot", "to_slot", "version", "previous_version", "reason",
             "switched_at"}
    return [{**{k: r.get(k) for k in fixed},
             "details": {k: v for k, v in r.items() if k not in fixed}}
            for r in reversed(view["serving"].get("history", []))]


# A check's own columns; the others are shown as its extra figures. ``statistics`` is
# already written out in the check's detail (interval, p-value, rows; raw in verdict.json).
CHECK_FIELDS = {"name", "value", "op", "threshold", "passed", "detail", "margin", "statistics"}


def gate_rows(view: dict, root: str) -> list[dict]:
    """Every gate verdict, newest first, with its report links; each check's figures beyond
    value, limit and margin (an interval, a p-value, rows used) as ``extra``."""
    pack = view["pack"]
    return [{**g, "links": [(name, report_url(root, pack, g["report_path"], name))
                            for name in g["reports"] + ["verdict.json"]],
             "checks": [{**c, "extra": {k: v for k, v in c.items()
                                        if k not in CHECK_FIELDS and v is not None}}
                        for c in g["checks"]]}
            for g in reversed(view["gates"])]


def drift_rows(view: dict, root: str) -> list[dict]:
    """Every drift report, newest first, with per-dataset column charts and report links."""
    pack = view["pack"]
    rows = []
    for d in reversed(view["drift"]):
        datasets = []
        for name, data in d["datasets"].items():
            datasets.append({
                "name": name, "share": data["share"], "rows": data["rows"],
                "drifted": data["drifted"],
                "chart": column_chart(data, d["column_threshold"],
                                      f"{name} drift score per column "
                                      f"({d['start']}..{d['end']})"),
                "url": data["report"] and report_url(root, pack, d["report_path"],
                                                     data["report"])})
        rows.append({**d, "datasets": datasets,
                     "summary_url": report_url(root, pack, d["report_path"], "summary.json")})
    return rows


def retrain_rows(view: dict) -> list[dict]:
    """The retrain policy's decision per monitored interval, newest first, each rule's
    report linked to its section of the page."""
    return [{**r, "reports": [{"rule": o["rule"], "report_id": o["report_id"],
                               "anchor": f"#{o['rule']}-{o['report_id']}"}
                              for o in r["observations"]]}
            for r in reversed(view.get("retrain", []))]


def _all_skipped(run: dict) -> bool:
    return bool(run["tasks"]) and all(t["state"] == "skipped" for t in run["tasks"].values())


def pack_page(view: dict, runs: dict, root: str) -> dict:
    """Everything the pack page renders."""
    pack = view["pack"]
    return {
        "view": view, "root": root, "summary": view["summary"],
        "model_chart": model_chart(view, root), "drift_chart": drift_chart(view, root),
        "lineage": lineage(view, runs, root), "gates": gate_rows(view, root),
        "drift": drift_rows(view, root), "serving": serving_history(view),
        "quality_chart": quality_chart(view), "quality": quality_rows(view, root),
        "retrain": retrain_rows(view), "policy": view.get("policy", {}),
        "stages": stage_times(runs), "runs": [r for r in runs["runs"] if not _all_skipped(r)][:20],
        "skipped_runs": sum(_all_skipped(r) for r in runs["runs"]),
        "validation": list(reversed(view["validation"]))[:30],
        "actions": {"retrain": dag_url(root, f"{pack}_train"),
                    "rollback": dag_url(root, f"{pack}_rollback")},
        "run_url": lambda dag_id, run_id, task_id=None: run_url(root, dag_id, run_id, task_id),
        "report_url": lambda *parts: report_url(root, pack, *parts),
    }
