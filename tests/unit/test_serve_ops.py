"""Local serving settings: the topology a local Serve app runs."""

from __future__ import annotations

import os

from recsys import serve_ops


def test_local_serving_is_fused_and_the_file_keeps_the_composed_graph():
    assert serve_ops.LOCAL_TOPOLOGY == "fused"
    assert serve_ops.serve_config()["applications"][0]["args"]["topology"] == "composed"
    local = serve_ops.serve_config(topology=serve_ops.LOCAL_TOPOLOGY)["applications"][0]
    assert [d["name"] for d in local["deployments"]] == ["Ingress"]


def test_a_local_ray_gets_haproxy_when_it_is_on_path_and_says_so(monkeypatch):
    for name in serve_ops.FAST_PROXY:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(serve_ops.shutil, "which", lambda name: None)
    line = serve_ops.proxy_settings()
    assert "haproxy is not on PATH" in line and "apt-get install haproxy" in line
    assert not any(name in os.environ for name in serve_ops.FAST_PROXY)

    monkeypatch.setattr(serve_ops.shutil, "which", lambda name: f"/usr/sbin/{name}")
    assert serve_ops.proxy_settings().startswith("proxy: HAProxy")
    assert {k: os.environ[k] for k in serve_ops.FAST_PROXY} == serve_ops.FAST_PROXY

    monkeypatch.setenv("RAY_SERVE_ENABLE_HA_PROXY", "0")  # the user's choice stands
    assert serve_ops.proxy_settings().startswith("proxy: Serve default")
    assert os.environ["RAY_SERVE_ENABLE_HA_PROXY"] == "0"
