"""Local serving settings: the topology a local Serve app runs."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from recsys import config, serve_ops


def test_local_serving_is_fused_and_the_file_keeps_the_composed_graph():
    assert serve_ops.LOCAL_TOPOLOGY == "fused"
    assert serve_ops.serve_config()["applications"][0]["args"]["topology"] == "composed"
    local = serve_ops.serve_config(topology=serve_ops.LOCAL_TOPOLOGY)["applications"][0]
    assert [d["name"] for d in local["deployments"]] == ["Ingress", "Shadow"]


def test_a_local_ray_gets_haproxy_when_it_is_on_path_and_says_so(monkeypatch):
    monkeypatch.setattr(config, "_local", None)  # as in a process that has started no Ray yet
    for name in (*config.FAST_PROXY, *config.SIDE_PORTS):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(config.shutil, "which", lambda name: None)
    line = serve_ops.proxy_settings()
    assert "haproxy is not on PATH" in line and "apt-get install haproxy" in line
    assert not any(name in os.environ for name in (*config.FAST_PROXY, *config.SIDE_PORTS))

    monkeypatch.setattr(config.shutil, "which", lambda name: f"/usr/sbin/{name}")
    assert serve_ops.proxy_settings().startswith("proxy: HAProxy")
    assert {k: os.environ[k] for k in config.FAST_PROXY} == serve_ops.FAST_PROXY
    # HAProxy's stats and metrics ports and the fallback proxy's: free ones, not 8404/9101/8500
    side = [int(os.environ[name]) for name in config.SIDE_PORTS]
    assert len(set(side)) == 3 and not {8404, 9101, 8500} & set(side)

    monkeypatch.setenv("RAY_SERVE_ENABLE_HA_PROXY", "0")  # the user's choice stands
    assert serve_ops.proxy_settings().startswith("proxy: Serve default")
    assert os.environ["RAY_SERVE_ENABLE_HA_PROXY"] == "0"


def test_our_ports_are_free_and_outside_the_range_outgoing_connections_take(monkeypatch, tmp_path):
    # A port from the kernel's ephemeral range can be taken by an outgoing connection (Ray
    # opens many) between the choice and the bind: HAProxy's metrics port once was.
    low = int(Path(config.EPHEMERAL_RANGE).read_text().split()[0])
    ports = {config.free_port() for _ in range(20)}
    assert all(config.PORTS_FROM <= port < low for port in ports) and len(ports) > 1
    with socket.socket() as held:  # a port that is taken is never chosen
        held.bind(("127.0.0.1", 0))
        monkeypatch.setattr(config, "PORTS_FROM", held.getsockname()[1])
        monkeypatch.setattr(config, "EPHEMERAL_RANGE", str(tmp_path / "range"))
        (tmp_path / "range").write_text(f"{held.getsockname()[1] + 1} 60999\n")
        port = config.free_port()  # the only port of ours is held: the kernel's choice
        assert port != held.getsockname()[1] and port > 0


def test_ray_loggers_write_to_the_session_file_not_the_screen(tmp_path, capsys, monkeypatch):
    import logging

    import ray  # noqa: F401  (Ray adds its screen handler on import; no Ray is started)

    # A handler of its own: in a worker that ran the integration tests before, the process's
    # handler already writes to an earlier session's file.
    monkeypatch.setattr(config, "_RAY_LINES", config._RayLines())

    config.quiet_ray_logging()
    logging.getLogger("ray.serve").addHandler(logging.StreamHandler())  # as `import ray.serve`
    config.quiet_ray_logging()
    logging.getLogger("ray._private.worker").warning("held until the session is known")
    config.quiet_ray_logging(tmp_path / "driver.log")
    logging.getLogger("ray.serve").info("Started Serve")
    captured = capsys.readouterr()
    assert captured.out == captured.err == ""
    lines = (tmp_path / "driver.log").read_text().splitlines()
    assert [line.split(" -- ")[1] for line in lines] == [
        "held until the session is known",
        "Started Serve",
    ]


def test_an_unreachable_ray_address_is_one_line():
    import socket

    with socket.socket() as sock:  # a port with no listener: bound, never listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        with pytest.raises(config.RecsysError) as err:
            config.check_ray_address(f"127.0.0.1:{port}")
    message = str(err.value)
    assert message.startswith(f"RAY_ADDRESS=127.0.0.1:{port}: no Ray cluster answers there")
    assert "unset RAY_ADDRESS" in message and "\n" not in message
    with pytest.raises(config.RecsysError, match="expected host:port"):
        config.check_ray_address("nowhere")


def test_local_replicas_one_per_cpu_up_to_four_and_serve_accepts_the_config(monkeypatch):
    from ray.serve.schema import ServeDeploySchema

    for cpus, expected in ((None, 1), (1, 1), (2, 2), (16, 4)):
        monkeypatch.setattr(serve_ops.os, "cpu_count", lambda c=cpus: c)
        assert serve_ops.local_replicas() == expected
    fused = serve_ops.serve_config(topology="fused", replicas=2)
    ingress, shadow = fused["applications"][0]["deployments"]
    assert shadow["autoscaling_config"]["min_replicas"] == 0  # none until a shadow runs
    scaling = ingress["autoscaling_config"]
    assert (scaling["min_replicas"], scaling["initial_replicas"], scaling["max_replicas"]) == (
        2,
        2,
        4,
    )
    many = serve_ops.serve_config(replicas=6)  # above a deployment's maximum: the maximum rises
    for deployment in many["applications"][0]["deployments"][:-1]:  # all but the Shadow
        assert deployment["autoscaling_config"]["min_replicas"] == 6
        assert deployment["autoscaling_config"]["max_replicas"] == 6
    fixed = serve_ops.fix_replicas(serve_ops.serve_config(), 3)["applications"][0]
    assert [d.get("num_replicas") for d in fixed["deployments"]] == [3, 3, 3, None]
    assert fixed["deployments"][-1]["autoscaling_config"]["min_replicas"] == 0  # the Shadow's
    nodes = serve_ops.serve_config(topology="fused", proxy_location="HeadOnly")  # one machine
    assert nodes["proxy_location"] == "HeadOnly"
    assert serve_ops.serve_config()["proxy_location"] == "EveryNode"  # the file's
    for app_config in (fused, many, nodes, {"applications": [fixed]}):
        ServeDeploySchema.model_validate(
            app_config
        )  # what `serve deploy` would refuse, refused here
    untouched = serve_ops.serve_config(topology="fused")["applications"][0]["deployments"][0]
    assert untouched["autoscaling_config"]["min_replicas"] == 1
