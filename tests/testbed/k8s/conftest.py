"""Make the ``kube_testbed`` fixture available to the tests in this folder."""

from .fixtures import kube_testbed  # noqa: F401
