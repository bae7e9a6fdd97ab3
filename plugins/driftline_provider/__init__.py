"""Airflow provider for driftline: thin hooks, operators, sensors and triggers over the core.

Registered through the ``apache_airflow_provider`` entry point, so
``airflow providers list`` shows it and the triggerer can import its triggers.
"""

from __future__ import annotations

__version__ = "0.1.0"


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
            "driftline_provider.operators.ingest",
            "driftline_provider.operators.training",
            "driftline_provider.operators.gate",
            "driftline_provider.operators.deploy",
            "driftline_provider.operators.monitor",
            "driftline_provider.operators.kubernetes",
        ]}],
        "sensors": [{"integration-name": "driftline",
                     "python-modules": ["driftline_provider.sensors.drift",
                                        "driftline_provider.sensors.landing"]}],
        "triggers": [{"integration-name": "driftline",
                      "python-modules": ["driftline_provider.triggers.drift"]}],
        "connection-types": [{"hook-class-name": "driftline_provider.hooks.driftline.DriftlineHook",
                              "connection-type": "driftline"}],
        "plugins": [{"name": "driftline", "plugin-class": "driftline_provider.ui.DriftlinePlugin"}],
    }
