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


def test_local_replicas_one_per_cpu_up_to_four_and_serve_accepts_the_config(monkeypatch):
    from ray.serve.schema import ServeDeploySchema

    for cpus, expected in ((None, 1), (1, 1), (2, 2), (16, 4)):
        monkeypatch.setattr(serve_ops.os, "cpu_count", lambda c=cpus: c)
        assert serve_ops.local_replicas() == expected
    fused = serve_ops.serve_config(topology="fused", replicas=2)
    (ingress,) = fused["applications"][0]["deployments"]
    scaling = ingress["autoscaling_config"]
    assert (scaling["min_replicas"], scaling["initial_replicas"], scaling["max_replicas"]) == (
        2,
        2,
        4,
    )
    many = serve_ops.serve_config(replicas=6)  # above a deployment's maximum: the maximum rises
    for deployment in many["applications"][0]["deployments"]:
        assert deployment["autoscaling_config"]["min_replicas"] == 6
        assert deployment["autoscaling_config"]["max_replicas"] == 6
    for config in (fused, many):
        ServeDeploySchema.model_validate(config)  # what `serve deploy` would refuse, refused here
    untouched = serve_ops.serve_config(topology="fused")["applications"][0]["deployments"][0]
    assert untouched["autoscaling_config"]["min_replicas"] == 1
