"""Where driftline keeps its state, where its dataset packs are, and the thresholds it applies.

The embedded defaults work with nothing set up: state lives under ``$DRIFTLINE_HOME`` (default
``./.driftline``), packs under ``$DRIFTLINE_PACKS`` (default ``./packs``). A TOML file named by
``$DRIFTLINE_CONFIG`` overrides any field. A section's fields apply to every pack unless the
pack's own spec sets them; ``[packs.<name>.<section>]`` overrides one pack's spec::

    [monitor]
    drift_share_threshold = 0.4

    [packs.flights.gate]
    floors = {auc = 0.62}

Every section is validated strictly: an unknown key or a wrong type names the file, the
section and what was expected.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import field
from pathlib import Path
from typing import Annotated, Literal, dataclass_transform, get_args

import pydantic
from pydantic.dataclasses import dataclass as _pydantic_dataclass

STRICT = pydantic.ConfigDict(extra="forbid", use_attribute_docstrings=True)


@dataclass_transform(frozen_default=True, field_specifiers=(field,))
def dataclass(cls=None, /, **kwargs):
    """A frozen dataclass whose fields are type-checked and unknown fields refused."""
    def wrap(c):
        return _pydantic_dataclass(c, frozen=True, config=STRICT)
    return wrap if cls is None else wrap(cls)


@dataclass
class ValidationSettings:
    """Data-quality limits applied to each landing file (columns' own limits are in the
    pack's spec)."""

    min_rows: int = 50
    """Fewest rows an interval's file may hold."""
    max_out_of_range_share: float = 0.005
    """Largest share of a column's values outside its declared range."""
    max_unknown_category_share: float = 0.0
    """Largest share of a column's values outside its declared categories."""
    max_outside_interval_share: float = 0.0
    """Largest share of rows whose time falls outside the file's data interval."""
    max_duplicate_share: float = 0.01
    """Largest share of rows that repeat an earlier row's key (the pack's ``key``; whole
    rows without one)."""
    max_rows_vs_history: float = 3.0
    """Most rows a file may hold, as a multiple of the median row count of the pack's last
    ``history_partitions`` ingested intervals (0: no limit)."""
    history_partitions: int = 30
    """How many earlier ingested intervals the row-count limit compares with."""
    max_file_mb: float = 200.0
    """Largest landing file, in MiB; a larger one is refused before it is read."""
    on_duplicates: Literal["fail", "warn"] = "fail"
    """``fail`` (quarantine) or ``warn`` (ingest, and flag it in the report) when the duplicate
    share is over its limit."""
    on_volume: Literal["fail", "warn"] = "fail"
    """``fail`` or ``warn`` when the row count is over its limit against the history."""


@dataclass
class TrainingSettings:
    """Defaults for a training run; a run's params override them."""

    window_days: int = 90
    """Days of data a training run uses, ending at the window's end."""
    holdout_days: int = 14
    """The window's last days, held out for evaluation and the gate (never shuffled)."""
    reference_rows: int = 20_000
    """Training-feature rows kept with the model as the drift reference."""
    num_boost_round: int = 200
    """XGBoost boosting rounds."""
    max_depth: int = 6
    """XGBoost tree depth."""
    learning_rate: float = 0.1
    """XGBoost learning rate (eta)."""
    subsample: float = 0.9
    """Share of rows sampled per tree."""
    colsample_bytree: float = 0.9
    """Share of features sampled per tree."""
    min_child_weight: float = 1.0
    """XGBoost minimum hessian per leaf."""
    nthread: int = 0
    """XGBoost threads; 0 = all cores."""
    device: str = "cpu"
    """``cpu`` or ``cuda``."""
    require_gpu: bool = True
    """Fail when ``device`` asks for CUDA and XGBoost fell back to the CPU."""


@dataclass
class GateSettings:
    """Pass/fail rules of the promotion gate (candidate vs live champion, same holdout)."""

    floors: dict[str, float] = field(default_factory=dict)
    """Per metric, the candidate's limit (a minimum where higher is better, else a maximum)."""
    max_worsening: dict[str, float] = field(default_factory=dict)
    """Per metric, how much worse than the champion the candidate may be (metric units)."""
    max_train_drift_share: float = 0.9
    """Share of feature columns drifted between the candidate's training data and the
    champion's reference data above which the candidate is refused as too different."""
    allow_label_change: bool = False
    """A champion trained under another label definition is not comparable: the gate refuses,
    unless this is true; then only the floors apply and the verdict says so."""
    significance: Literal["refuse_worse", "require_better", "off"] = "refuse_worse"
    """Paired test of the primary metric, candidate minus champion on the same holdout rows
    (seeded bootstrap interval at ``confidence``): ``refuse_worse`` refuses a candidate whose
    whole interval is on the worse side of 0 (significantly worse), ``require_better`` refuses
    one whose interval is not wholly on the better side (not significantly better; a tie is
    refused), ``off`` skips the test."""
    confidence: Annotated[float, pydantic.Field(gt=0.5, lt=1)] = 0.95
    """Confidence level of the gate's interval (above 0.5, below 1)."""


@dataclass
class RetrainSettings:
    """The retrain policy: which rules start a retraining, and how often at most
    (:mod:`driftline.retraining`)."""

    on: list[Literal["drift", "quality", "cadence"]] = field(
        default_factory=lambda: ["drift", "quality"])
    """Rules that may start a retraining: ``drift`` (drifted-column share reaches
    ``[monitor] drift_share_threshold``), ``quality`` (the live model's primary metric on an
    interval's outcomes worse than its holdout by more than ``[monitor] max_quality_drop``),
    ``cadence`` (new data retrains every ``cadence_days``)."""
    consecutive: Annotated[int, pydantic.Field(ge=1, le=100)] = 1
    """Consecutive crossing reports of a rule (against the same live model) needed before it
    triggers; the count starts again after each retrain."""
    cooldown_days: Annotated[int, pydantic.Field(ge=0, le=3660)] = 0
    """Days of data after the last retrain's interval (or the champion's training window) in
    which no report triggers another."""
    cadence_days: Annotated[int | None, pydantic.Field(ge=1, le=3660)] = None
    """With ``cadence`` on: days of data after the champion's training window before new data
    retrains it (a run's ``retrain_every_days`` Param overrides it)."""

    def __post_init__(self):
        if "cadence" in self.on and self.cadence_days is None:
            raise ValueError("the cadence rule is on but cadence_days is not set")


@dataclass
class MonitorSettings:
    """Drift monitoring and the retrain trigger."""

    drift_share_threshold: float = 0.35
    """Share of the feature columns that must drift for a report to count as drift."""
    column_drift_threshold: float = 0.3
    """Per-column drift score (normed Wasserstein for numbers, Jensen-Shannon for categories)
    above which a column counts as drifted (Evidently's default is 0.1)."""
    reference_rows: int = 20_000
    """Rows of the reference sample drift reports use."""
    poke_interval_s: float = 5.0
    """How often the retrain policy's trigger looks for new reports."""
    max_quality_drop: dict[str, float] = field(default_factory=dict)
    """Per metric, how much worse than its own holdout figure the live model may score on an
    interval's outcomes before the interval counts as a quality crossing (metric units)."""
    prediction_drift_threshold: float | None = None
    """Drift score of the model's outputs (interval vs its holdout) that counts as prediction
    drift; default the test's own (Evidently's: 0.1 for Wasserstein, p 0.05 for K-S)."""


AlertEvent = Literal["drift", "quality", "gate_refused", "auto_rollback", "quarantine",
                     "deploy_failed"]
ALERT_EVENTS: tuple[AlertEvent, ...] = get_args(AlertEvent)
"""What an alert may be about: a drift report that crossed, a live-quality crossing, a
refused candidate, a deploy rolled back automatically, a quarantined landing file, a failed
deploy."""


@dataclass
class AlertsSettings:
    """Alerts through Airflow notifiers, per pack: email (the SMTP provider's connection) and
    a generic webhook (an HTTP connection, a JSON POST). Off unless ``email_to`` or
    ``webhook_conn_id`` is set."""

    events: list[AlertEvent] = field(default_factory=lambda: list(ALERT_EVENTS))
    """Which events alert: ``drift``, ``quality``, ``gate_refused``, ``auto_rollback``,
    ``quarantine``, ``deploy_failed`` (default all)."""
    email_to: list[str] = field(default_factory=list)
    """Addresses an alert is emailed to; empty: no email."""
    smtp_conn_id: str = "smtp_default"
    """Airflow connection (type ``smtp``) the email goes through."""
    webhook_conn_id: str = ""
    """Airflow connection (type ``http``) an alert's JSON is POSTed to: schema, host, port,
    extra ``endpoint`` (the path) and ``headers``; empty: no webhook."""
    ui_base_url: str = "http://127.0.0.1:8080"
    """The Airflow UI's address, for the link to the report in each alert."""


@dataclass
class ServingSettings:
    """Blue-green serving on loopback: one router for every pack, two slots per pack.
    ``host``, ``router_port`` and ``backend`` are installation-wide; a pack may set the rest."""

    host: str = "127.0.0.1"
    """Loopback address the router binds to."""
    router_port: int = 8780
    """The router's port: ``/<pack>/predict`` for every pack."""
    max_batch_rows: int = 10_000
    """Largest batch one request may send (413 over it)."""
    start_timeout_s: float = 60.0
    """How long a starting slot has to become ready."""
    backend: str = "local"
    """``local`` (slot processes behind nginx) or ``kubernetes`` (blue and green
    Deployments behind one Service whose selector is switched; see ``[serving_kubernetes]``)."""
    shadow_rows: int = 500
    """Most recent served rows replayed to the candidate and the live slot before a switch."""
    shadow_max_disagreement: float = 0.25
    """Binary packs: largest share of shadow rows whose call may differ from the live slot's
    (see ``shadow_confidence``).
    It should catch a broken candidate, not a legitimate retrain: measure what a retrain
    differs by on the pack's data and set it above that."""
    shadow_max_relative_diff: float = 0.25
    """Regression packs: largest mean absolute difference between the candidate's and the
    live slot's predictions, relative to the live slot's mean absolute prediction."""
    shadow_confidence: Annotated[float, pydantic.Field(gt=0.5, lt=1)] = 0.95
    """Confidence level (above 0.5, below 1) of the shadow measure's interval (Wilson for the
    share of calls that differ, a seeded bootstrap for the relative difference). The
    candidate is refused when the interval's lower bound is over the limit: it differs by
    more than allowed beyond what the number of shadow rows leaves in doubt."""
    post_switch_watch_s: float = 3.0
    """How long the router is watched after a switch; a failed check rolls back at once."""
    prediction_log_keep_days: int = 400
    """Prediction log partitions (by event date) kept; older ones are deleted."""
    prediction_log_max_mb: int = 2048
    """Cap on the prediction log's size; past it, new rows are dropped and counted."""
    predictor: Literal["compiled", "xgboost"] = "compiled"
    """``compiled``: the slot serves the model's trees compiled to C (treelite + tl2cgen,
    built at load time from the verified model, cached by its sha256), falling back to
    XGBoost if they cannot be built or differ from it; ``xgboost``: XGBoost only."""
    workers: Annotated[int, pydantic.Field(ge=0, le=16)] = 0
    """Server processes per slot, sharing its socket; 0: one per core, at most 4."""


@dataclass
class KubernetesServingSettings:
    """Blue-green serving on Kubernetes, used when ``[serving] backend = "kubernetes"``."""

    image: str = "driftline-serve:0.1.0"
    namespace: str = "default"
    service: str = "driftline-serving"
    """Prefix of every object's name: a pack's live Service is ``<service>-<pack>-live``, its
    selector's ``driftline.io/slot`` is what a switch changes."""
    blue_port: int = 8080
    green_port: int = 8080
    """The model server's TCP port in the blue (green) slot's pods (the container port
    ``http``; Services target it by name). Every pod has its own network, so both can be
    the same; they must differ only where pods share one (``hostNetwork``, a test node)."""
    replicas: int = 2
    cpu_request: str = "1"
    memory_request: str = "1Gi"
    memory_limit: str = "2Gi"
    run_as_user: int = 10001
    home: str = "/data/driftline"
    """DRIFTLINE_HOME in the serving pods (the registry must be there)."""
    packs_dir: str = "/opt/driftline/packs"
    """DRIFTLINE_PACKS in the serving pods: where the image (or a volume) holds the packs."""
    home_pvc: str = ""
    """PersistentVolumeClaim with the registry, mounted read-only at ``home``."""
    config_map: str = ""
    """ConfigMap with a ``driftline.toml`` key for the pods' settings."""
    config_file: str = ""
    cluster_context: str = ""
    in_cluster: bool = False


@dataclass
class KubernetesSettings:
    """Where and how training pods run when the training backend is ``kubernetes``."""

    image: str = "driftline-train:0.1.0"
    namespace: str = "default"
    gpus: int = 1
    """GPUs requested as a limit (``nvidia.com/gpu``); 0 trains on the CPU."""
    node_selector: dict = field(default_factory=lambda: {"nvidia.com/gpu.present": "true"})
    tolerations: list = field(default_factory=lambda: [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}])
    cpu_request: str = "4"
    memory_request: str = "16Gi"
    memory_limit: str = "32Gi"
    run_as_user: int = 10001
    remote_secret: str = "driftline-dvc-remote"
    """Kubernetes Secret whose keys become the pod's env (e.g. AWS_ACCESS_KEY_ID)."""
    data_repo_url: str = ""
    """Git URL of the data repository as seen from the pod; empty = the local path."""
    packs_dir: str = "/opt/driftline/packs"
    """DRIFTLINE_PACKS inside the pod: where the image (or a volume) holds the packs."""
    home: str = "/data/driftline"
    """DRIFTLINE_HOME inside the pod: where ``home_pvc`` is mounted."""
    home_pvc: str = ""
    """PersistentVolumeClaim (ReadWriteMany) holding the registry and data repo, shared with
    the Airflow workers; empty = no volume (the image or node provides ``home``)."""
    config_map: str = ""
    """ConfigMap with a ``driftline.toml`` key: mounted read-only and named by
    ``DRIFTLINE_CONFIG`` so the pod trains with the workers' settings."""
    service_account: str = ""
    config_file: str = ""
    cluster_context: str = ""
    in_cluster: bool = False
    startup_timeout_s: int = 600
    deferrable: bool = False


PACK_SECTIONS = ("validation", "training", "gate", "monitor", "serving", "retrain",
                 "alerts")
"""Sections a pack's spec (and ``[packs.<name>]``) may set."""
INSTALLATION_WIDE = {"serving": {"host", "router_port", "backend"}}


@dataclasses.dataclass(frozen=True)
class Settings:
    """All of driftline's installation-wide configuration. Paths derive from ``home``.

    ``sections`` holds the TOML's raw section tables and ``pack_overrides`` its
    ``[packs.<name>.<section>]`` tables; :func:`driftline.workspace.open_workspace` merges
    them with a pack's spec.
    """

    home: Path
    packs_dir: Path = Path("packs")
    dvc_remote_url: str = ""
    """DVC remote; empty means a local directory remote under ``home``. An ``s3://``
    URL works when credentials come from the environment (never from this file)."""
    validation: ValidationSettings = field(default_factory=ValidationSettings)
    training: TrainingSettings = field(default_factory=TrainingSettings)
    gate: GateSettings = field(default_factory=GateSettings)
    monitor: MonitorSettings = field(default_factory=MonitorSettings)
    retrain: RetrainSettings = field(default_factory=RetrainSettings)
    serving: ServingSettings = field(default_factory=ServingSettings)
    alerts: AlertsSettings = field(default_factory=AlertsSettings)
    kubernetes: KubernetesSettings = field(default_factory=KubernetesSettings)
    serving_kubernetes: KubernetesServingSettings = field(
        default_factory=KubernetesServingSettings)
    sections: dict = field(default_factory=dict)
    pack_overrides: dict = field(default_factory=dict)
    config_file: str | None = None

    @property
    def dvc_remote(self) -> str:
        return self.dvc_remote_url or str(self.home / "dvc-remote")

    @property
    def serving_dir(self) -> Path:
        """Installation-wide serving state (the router); each pack has a folder below."""
        return self.home / "serving"


SECTIONS = {
    "validation": ValidationSettings,
    "training": TrainingSettings,
    "gate": GateSettings,
    "monitor": MonitorSettings,
    "retrain": RetrainSettings,
    "serving": ServingSettings,
    "alerts": AlertsSettings,
    "kubernetes": KubernetesSettings,
    "serving_kubernetes": KubernetesServingSettings,
}
TOP_LEVEL = ("dvc_remote_url", "packs_dir")


def build_section(name: str, values: dict, where: str):
    """The settings section ``name`` from ``values`` (strictly validated).

    :param where: names the source in errors, e.g. ``driftline.toml [training]``.
    :raises ValueError: an unknown key or a wrong type, naming ``where`` and the field.
    """
    cls = SECTIONS[name]
    if not isinstance(values, dict):
        raise ValueError(f"{where}: expected a table of settings, got {values!r}")
    known = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; expected some of {known}")
    try:
        return cls(**values)
    except pydantic.ValidationError as exc:
        problems = "; ".join(
            ": ".join(filter(None, (".".join(str(p) for p in e["loc"]),
                                    e["msg"].removeprefix("Value error, "))))
            for e in exc.errors())
        raise ValueError(f"{where}: {problems}") from None


def load_settings(home: str | Path | None = None, config: str | Path | None = None,
                  packs_dir: str | Path | None = None) -> Settings:
    """Build settings from the embedded defaults, a TOML file and the environment.

    :param home: state directory; default ``$DRIFTLINE_HOME`` or ``./.driftline``.
    :param config: TOML file; default ``$DRIFTLINE_CONFIG`` if set.
    :param packs_dir: dataset packs; default ``$DRIFTLINE_PACKS``, the TOML's ``packs_dir``
        or ``./packs``.
    :raises ValueError: the TOML names an unknown section or key, or a value has the wrong type.
    """
    home = Path(home or os.environ.get("DRIFTLINE_HOME") or ".driftline").absolute()
    config = config or os.environ.get("DRIFTLINE_CONFIG") or None
    overrides = tomllib.loads(Path(config).read_text()) if config else {}
    kwargs: dict = {"home": home, "config_file": str(config) if config else None}
    sections: dict = {}
    for key, value in overrides.items():
        if key in SECTIONS:
            kwargs[key] = build_section(key, value, f"{config} [{key}]")
            sections[key] = dict(value)
        elif key == "packs":
            kwargs["pack_overrides"] = _pack_overrides(value, config)
        elif key in TOP_LEVEL:
            kwargs[key] = value
        else:
            raise ValueError(
                f"{config}: unknown setting {key!r}; expected {', '.join(TOP_LEVEL)}, "
                f"[packs.<name>.<section>] or a section among {sorted(SECTIONS)}")
    packs = packs_dir or os.environ.get("DRIFTLINE_PACKS") or kwargs.get("packs_dir") or "packs"
    kwargs["packs_dir"] = Path(packs).absolute()
    return Settings(**kwargs, sections=sections)


def _pack_overrides(value, config) -> dict:
    if not isinstance(value, dict):
        raise ValueError(f"{config} [packs]: expected [packs.<name>.<section>] tables")
    for pack, tables in value.items():
        for section, values in tables.items():
            where = f"{config} [packs.{pack}.{section}]"
            if section not in PACK_SECTIONS:
                raise ValueError(f"{where}: a pack may override only {list(PACK_SECTIONS)}")
            build_section(section, values, where)
    return {pack: {s: dict(v) for s, v in tables.items()} for pack, tables in value.items()}
