"""The serving benchmark's CPU meter: it finds this process and charges it the CPU it spends."""

import time

import psutil

from benchmarks.serving_load import CpuMeter, cpu_table, process_class


def test_the_meter_charges_this_process_the_cpu_it_spent_per_request():
    assert process_class(psutil.Process()) == "load generator (+ Ray driver)"
    meter = CpuMeter()
    t0 = time.process_time()
    while time.process_time() - t0 < 0.2:  # 200 ms of CPU here
        sum(range(1000))
    ms = meter.per_request_ms(requests=10)
    assert 15 <= ms["load generator (+ Ray driver)"] <= 30  # 200 ms / 10 requests, ticks aside
    assert ms["total"] >= ms["load generator (+ Ray driver)"]


def test_the_cpu_table_has_a_column_per_kind_of_process():
    rows = [
        {
            "proxy": "haproxy",
            "topology": "fused",
            "concurrency": 16,
            "rps": 200.0,
            "cpu_ms_per_request": {"replica Ingress": 6.0, "haproxy": 0.2, "total": 6.2},
        },
        {
            "proxy": "haproxy",
            "topology": "fused",
            "concurrency": 1,
            "rps": 60.0,
            "cpu_ms_per_request": {"replica Ingress": 9.0, "total": 9.0},
        },
    ]
    table = cpu_table(rows).splitlines()
    assert table[2] == "| proxy | topology | req/s | replica Ingress | haproxy | total |"
    assert table[4] == "| haproxy | fused | 200.0 | 6.0 | 0.2 | 6.2 |"
    assert len(table) == 5  # concurrency 16 only
