"""The Kubernetes testbed for the provider's tests: the same session-wide testbed as
``tests/testbed/k8s`` (same module name, so one etcd + kube-apiserver per session)."""

from testbed.k8s.fixtures import kube_testbed  # noqa: F401
