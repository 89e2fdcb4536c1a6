"""Fixtures for tests against a real kube-apiserver + etcd (see kubeenv.py and
docs/kubernetes-testing.md). The binaries are built once per version by
scripts/kube-tools.sh (minutes, cached under ~/.cache/airlock/kube) and the
control plane is started once per test session (a few seconds)."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from kubeenv import KubeEnv, KubeUser, find_tools  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
CRD_DIR = REPO / "deploy" / "crds"

# The operator's identity as the API server sees a ServiceAccount token:
# RoleBindings naming ServiceAccount airlock/airlock-operator apply to it.
OPERATOR = KubeUser(
    "system:serviceaccount:airlock:airlock-operator",
    ["system:serviceaccounts", "system:serviceaccounts:airlock", "system:authenticated"])
# An ordinary authenticated person with no RBAC of their own.
ALICE = KubeUser("alice", ["system:authenticated"])


@pytest.fixture(scope="session")
def kube_bin():
    """Directory with kube-apiserver, kubectl, etcd and helm."""
    return find_tools()


@pytest.fixture(scope="session")
def kube(kube_bin):
    """A running API server with the airlock CRDs established.

    Users: "admin" (system:masters), "operator" (the airlock operator's
    ServiceAccount identity), "alice" (authenticated, no roles)."""
    env = KubeEnv(kube_bin, users={"operator": OPERATOR, "alice": ALICE})
    env.start()
    try:
        env.apply_crds(CRD_DIR)
        env.kubectl("create", "namespace", "airlock")
        yield env
    finally:
        env.stop()
