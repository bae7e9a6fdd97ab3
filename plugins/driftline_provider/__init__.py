"""Airflow provider for driftline: thin hooks, operators, sensors and triggers over the core.

Registered through the ``apache_airflow_provider`` entry point, so
``airflow providers list`` shows it and the triggerer can import its triggers.
"""

from __future__ import annotations

__version__ = "0.1.0"


def _text(label: str, description: str) -> dict:
    return {"label": label, "description": description, "schema": {"type": ["string", "null"]}}


# The connection form, declared (Airflow 3.2+ reads it without importing the hook).
CONNECTION_TYPE = {
    "hook-class-name": "driftline_provider.hooks.driftline.DriftlineHook",
    "hook-name": "driftline",
    "connection-type": "driftline",
    "conn-fields": {
        "home": _text("State directory", "driftline's home (registry, data, reports, serving)"),
        "config": _text("Configuration file", "a driftline TOML file"),
        "packs_dir": _text("Packs directory", "the dataset packs (one directory each)"),
        "dvc_remote_url": _text("DVC remote", "a directory, or s3://<bucket>/<prefix> "
                                "(access key and secret below)"),
        "endpoint_url": _text("S3 endpoint", "http(s):// URL of an S3-compatible server for "
                              "an s3:// remote; empty for AWS"),
    },
    "ui-field-behaviour": {
        "hidden-fields": ["schema", "port", "host"],
        "relabeling": {"login": "DVC remote access key", "password": "DVC remote secret"},
        "placeholders": {"home": "/data/driftline", "dvc_remote_url": "/mnt/shared/dvc"},
    },
}


def get_provider_info() -> dict:
    """Provider metadata read by Airflow's ProvidersManager."""
    return {
        "package-name": "airflow-provider-driftline",
        "name": "driftline",
        "description": "A model's whole life on a schedule: DVC-versioned ingestion, training "
        "(local or Kubernetes), Evidently gates, blue-green deploys and drift-triggered "
        "retraining.",
        "versions": [__version__],
        "integrations": [{"integration-name": "driftline", "tags": ["software"]}],
        "hooks": [{"integration-name": "driftline",
                   "python-modules": ["driftline_provider.hooks.driftline"]}],
        "operators": [{"integration-name": "driftline", "python-modules": [
            "driftline_provider.operators.base",
            "driftline_provider.operators.interval",
            "driftline_provider.operators.ingest",
            "driftline_provider.operators.training",
            "driftline_provider.operators.gate",
            "driftline_provider.operators.deploy",
            "driftline_provider.operators.monitor",
            "driftline_provider.operators.quality",
            "driftline_provider.operators.kubernetes",
        ]}],
        "sensors": [{"integration-name": "driftline",
                     "python-modules": ["driftline_provider.sensors.landing",
                                        "driftline_provider.sensors.retrain"]}],
        "triggers": [{"integration-name": "driftline",
                      "python-modules": ["driftline_provider.triggers.retrain"]}],
        "notifications": ["driftline_provider.notifications.driftline.DriftlineNotifier"],
        "connection-types": [CONNECTION_TYPE],
        "extra-links": ["driftline_provider.links.DriftlineReportLink"],
    }
