"""Local serving settings: the topology a local Serve app runs."""

from __future__ import annotations

from recsys import deploy


def test_local_serving_is_fused_and_the_file_keeps_the_composed_graph():
    assert deploy.LOCAL_TOPOLOGY == "fused"
    assert deploy.serve_config()["applications"][0]["args"]["topology"] == "composed"
    local = deploy.serve_config(topology=deploy.LOCAL_TOPOLOGY)["applications"][0]
    assert [d["name"] for d in local["deployments"]] == ["Ingress"]
