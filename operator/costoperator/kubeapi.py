"""The `kubernetes` client, configured as kubectl finds the cluster: the pod's service account
inside a cluster, else KUBECONFIG (read at call time, so the demo and tests can point it at the
emulator). Used for the few writes kopf does not make for us: scale, Lease, the scaling record."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from costoperator.crds import API_GROUP, API_VERSION, POLICY_PLURAL


def api_client() -> Any:
    from kubernetes import client, config

    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config()  # type: ignore[no-untyped-call]
        return client.ApiClient()
    return config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=os.environ.get("KUBECONFIG")
    )


class PolicyStatusClient:
    """Merge patches of an InferenceCostPolicy's `status` subresource. The operator writes
    status itself rather than through kopf's handler patch: kopf ends a timer for good when its
    patch is answered 409 Conflict (seen with kopf 1.45), so one conflicting write would freeze
    the policy's status until a restart (tests/kube/test_operator_api_faults.py)."""

    def __init__(self, api: Any | None = None) -> None:
        from kubernetes import client

        self._custom = client.CustomObjectsApi(api if api is not None else api_client())

    def patch(self, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        self._custom.patch_namespaced_custom_object_status(
            API_GROUP,
            API_VERSION,
            namespace,
            POLICY_PLURAL,
            name,
            {"status": dict(status)},
            _content_type="application/merge-patch+json",
        )
