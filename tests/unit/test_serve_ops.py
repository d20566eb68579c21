"""Local serving settings: the topology a local Serve app runs."""

from __future__ import annotations

from recsys import serve_ops


def test_local_serving_is_fused_and_the_file_keeps_the_composed_graph():
    assert serve_ops.LOCAL_TOPOLOGY == "fused"
    assert serve_ops.serve_config()["applications"][0]["args"]["topology"] == "composed"
    local = serve_ops.serve_config(topology=serve_ops.LOCAL_TOPOLOGY)["applications"][0]
    assert [d["name"] for d in local["deployments"]] == ["Ingress"]
