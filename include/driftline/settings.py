"""Where driftline keeps its state and which thresholds it applies.

Every stage reads one :class:`Settings`. The embedded defaults work with nothing set up:
state lives under ``$DRIFTLINE_HOME`` (default ``./.driftline``). A TOML file named by
``$DRIFTLINE_CONFIG`` overrides any field, e.g.::

    [gate]
    min_auc = 0.62
    max_auc_drop = 0.005

    [monitor]
    drift_share_threshold = 0.4
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class ValidationSettings:
    """Data-quality limits applied to each landing file."""

    min_rows: int = 50
    max_null_share_required: float = 0.0
    max_null_share_weather: float = 0.5
    max_out_of_range_share: float = 0.005


@dataclass(frozen=True)
class TrainingSettings:
    """Defaults for a training run; a run's params override them."""

    window_days: int = 90
    holdout_days: int = 14
    reference_rows: int = 20_000
    num_boost_round: int = 200
    max_depth: int = 6
    learning_rate: float = 0.1
    subsample: float = 0.9
    colsample_bytree: float = 0.9
    min_child_weight: float = 1.0
    nthread: int = 0
    device: str = "cpu"
    require_gpu: bool = True
    """Fail when ``device`` asks for CUDA and XGBoost fell back to the CPU."""


@dataclass(frozen=True)
class GateSettings:
    """Pass/fail thresholds of the promotion gate (candidate vs live champion)."""

    min_auc: float = 0.60
    max_auc_drop: float = 0.01
    """The candidate may be at most this much worse than the champion on the same holdout."""
    max_logloss_increase: float = 0.02
    max_train_drift_share: float = 0.9
    """Share of feature columns drifted between the candidate's training data and the
    champion's reference data above which the candidate is refused as too different."""


@dataclass(frozen=True)
class MonitorSettings:
    """Drift monitoring and the retrain trigger."""

    drift_share_threshold: float = 0.35
    """Share of the 16 feature columns that must drift for a report to count as drift
    (shares move in steps of 1/16: 0.35 means 6 or more columns)."""
    column_drift_threshold: float = 0.3
    """Per-column drift score (normed Wasserstein for numbers, Jensen-Shannon for categories)
    above which a column counts as drifted. Evidently's default 0.1 flags hourly weather as
    drifted even within the training quarter (Feb/Mar vs Q1 reference: 6/16 and 8/16 of
    columns); at 0.3 those read 1/16 and 2/16 while later months read 4/16 to 7/16."""
    reference_rows: int = 20_000
    poke_interval_s: float = 5.0


@dataclass(frozen=True)
class ServingSettings:
    """Blue-green serving on loopback."""

    host: str = "127.0.0.1"
    router_port: int = 8780
    blue_port: int = 8781
    green_port: int = 8782
    max_batch_rows: int = 10_000
    start_timeout_s: float = 60.0
    backend: str = "local"
    """``local`` (slot processes behind nginx) or ``kubernetes`` (blue and green
    Deployments behind one Service whose selector is switched; see ``[serving_kubernetes]``)."""
    shadow_rows: int = 500
    """Most recent served rows replayed to the candidate and the live slot before a switch."""
    shadow_max_disagreement: float = 0.25
    """Largest share of shadow rows whose late/not-late call may differ from the live slot's.
    It catches a broken candidate, not a retrained one: the demo's drift retrain (v2 vs v1 on
    April's served rows) differs on 12.4%."""
    post_switch_watch_s: float = 3.0
    """How long the router is watched after a switch; a failed check rolls back at once."""
    prediction_log_keep_days: int = 400
    """Prediction log partitions (by flight date) kept; older ones are deleted."""
    prediction_log_max_mb: int = 2048
    """Cap on the prediction log's size; past it, new rows are dropped and counted."""


@dataclass(frozen=True)
class KubernetesServingSettings:
    """Blue-green serving on Kubernetes, used when ``[serving] backend = "kubernetes"``."""

    image: str = "driftline-serve:0.1.0"
    namespace: str = "default"
    service: str = "driftline-serving"
    """The live Service; its selector's ``driftline.io/slot`` is what a switch changes."""
    replicas: int = 2
    cpu_request: str = "1"
    memory_request: str = "1Gi"
    memory_limit: str = "2Gi"
    run_as_user: int = 10001
    home: str = "/data/driftline"
    """DRIFTLINE_HOME in the serving pods (the registry must be there)."""
    home_pvc: str = ""
    """PersistentVolumeClaim with the registry, mounted read-only at ``home``."""
    config_map: str = ""
    """ConfigMap with a ``driftline.toml`` key for the pods' settings."""
    config_file: str = ""
    cluster_context: str = ""
    in_cluster: bool = False


@dataclass(frozen=True)
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


@dataclass(frozen=True)
class Settings:
    """All of driftline's configuration. Paths derive from ``home`` unless set."""

    home: Path
    model_name: str = "flight_delay"
    dvc_remote_url: str = ""
    """DVC remote; empty means a local directory remote under ``home``. An ``s3://``
    URL works when credentials come from the environment (never from this file)."""
    validation: ValidationSettings = field(default_factory=ValidationSettings)
    training: TrainingSettings = field(default_factory=TrainingSettings)
    gate: GateSettings = field(default_factory=GateSettings)
    monitor: MonitorSettings = field(default_factory=MonitorSettings)
    serving: ServingSettings = field(default_factory=ServingSettings)
    kubernetes: KubernetesSettings = field(default_factory=KubernetesSettings)
    serving_kubernetes: KubernetesServingSettings = field(
        default_factory=KubernetesServingSettings)

    @property
    def landing_dir(self) -> Path:
        return self.home / "landing" / "flights"

    @property
    def quarantine_dir(self) -> Path:
        return self.home / "quarantine" / "flights"

    @property
    def data_repo(self) -> Path:
        return self.home / "data-repo"

    @property
    def dvc_remote(self) -> str:
        return self.dvc_remote_url or str(self.home / "dvc-remote")

    @property
    def registry_dir(self) -> Path:
        return self.home / "registry"

    @property
    def reports_dir(self) -> Path:
        return self.home / "reports"

    @property
    def serving_dir(self) -> Path:
        return self.home / "serving"


_SECTIONS = {
    "validation": ValidationSettings,
    "training": TrainingSettings,
    "gate": GateSettings,
    "monitor": MonitorSettings,
    "serving": ServingSettings,
    "kubernetes": KubernetesSettings,
    "serving_kubernetes": KubernetesServingSettings,
}


def load_settings(home: str | Path | None = None, config: str | Path | None = None) -> Settings:
    """Build settings from the embedded defaults, a TOML file and the environment.

    :param home: state directory; default ``$DRIFTLINE_HOME`` or ``./.driftline``.
    :param config: TOML file; default ``$DRIFTLINE_CONFIG`` if set.
    :raises ValueError: the TOML names an unknown section or key.
    """
    home = Path(home or os.environ.get("DRIFTLINE_HOME") or ".driftline").absolute()
    config = config or os.environ.get("DRIFTLINE_CONFIG")
    overrides = tomllib.loads(Path(config).read_text()) if config else {}
    kwargs: dict = {"home": home}
    for key, value in overrides.items():
        if key in _SECTIONS:
            section = _SECTIONS[key]
            known = {f.name for f in dataclasses.fields(section)}
            unknown = set(value) - known
            if unknown:
                raise ValueError(
                    f"{config}: unknown key(s) {sorted(unknown)} in [{key}]; "
                    f"expected some of {sorted(known)}"
                )
            kwargs[key] = section(**value)
        elif key in {"model_name", "dvc_remote_url"}:
            kwargs[key] = value
        else:
            raise ValueError(
                f"{config}: unknown setting {key!r}; expected model_name, dvc_remote_url "
                f"or a section among {sorted(_SECTIONS)}"
            )
    return Settings(**kwargs)
