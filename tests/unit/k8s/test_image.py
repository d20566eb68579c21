"""The container image, as far as it can be checked without a Docker engine: its Dockerfile
installs the one resolution of `make test`, runs as a non-root user, pins its bases and torch
builds, copies only what .dockerignore lets through, and its entrypoints exist."""

from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def instructions() -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE)
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def stages() -> dict[str, list[tuple[str, str]]]:
    out: dict[str, list] = {}
    current = None
    for word, rest in instructions():
        if word == "FROM":
            current = rest.split(" AS ")[-1].strip() if " AS " in rest else rest
            out[current] = []
        elif current is not None:
            out[current].append((word, rest))
    return out


def arg_default(name: str) -> str:
    (value,) = {
        rest.split("=", 1)[1]
        for w, rest in instructions()
        if w == "ARG" and rest.startswith(f"{name}=")
    }
    return value


def test_it_is_multi_stage_and_the_runtime_runs_as_a_numeric_non_root_user():
    built = stages()
    assert list(built) == ["build", "runtime"]
    runtime = built["runtime"]
    (user,) = [rest for word, rest in runtime if word == "USER"]
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0  # numeric, so runAsNonRoot can be verified
    assert ("COPY", "--from=build /install /usr/local") in runtime
    assert not [rest for word, rest in runtime if word == "RUN" and "pip install" in rest]


def test_bases_are_pinned():
    base = arg_default("PYTHON_IMAGE")
    name, _, tag = base.partition(":")
    assert tag and tag != "latest" and re.match(r"3\.11\.\d+-slim", tag), base
    assert f"{sys.version_info.major}.{sys.version_info.minor}" in tag


def test_it_installs_the_constraints_file_of_make_test():
    installs = [rest for word, rest in stages()["build"] if word == "RUN" and "pip install" in rest]
    assert len(installs) == 2
    for command in installs:
        assert "-c constraints.txt" in command, command
    assert ("COPY", "constraints.txt ./") in stages()["build"]
    makefile = (ROOT / "Makefile").read_text()
    assert "install --quiet -c constraints.txt -e ." in makefile


def test_the_cpu_and_cuda_variants_pin_the_torch_of_the_constraints_file():
    pins = dict(
        line.split("==", 1)
        for line in (ROOT / "constraints.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    )
    assert arg_default("TORCH_VERSION") == pins["torch"]
    assert arg_default("TORCH_INDEX_CPU") == "https://download.pytorch.org/whl/cpu"
    cuda = arg_default("TORCH_INDEX_CUDA")
    assert re.fullmatch(r"https://download\.pytorch\.org/whl/cu1\d{2}", cuda), cuda
    (install,) = [
        r for w, r in stages()["build"] if w == "RUN" and '"torch==${TORCH_VERSION}"' in r
    ]
    assert (
        'cuda) index="$TORCH_INDEX_CUDA"' in install and 'cpu) index="$TORCH_INDEX_CPU"' in install
    )
    assert "exit 2" in install  # an unknown VARIANT fails the build, naming it


def _ignored(path: str, patterns: list[str]) -> bool:
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        if fnmatch.fnmatch(path, pattern) or path.startswith(pattern + "/") or pattern == "*":
            ignored = not negate
    return ignored


def test_what_the_image_copies_is_not_excluded_by_dockerignore():
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    sources = []
    for word, rest in instructions():
        if word == "COPY" and "--from=" not in rest:
            parts = [p for p in rest.split() if not p.startswith("--")]
            sources += parts[:-1]
    assert sources
    for source in sources:
        matches = [p for p in ROOT.glob(source)]
        assert matches, f"COPY {source}: nothing in the checkout"
        for match in matches:
            rel = str(match.relative_to(ROOT))
            assert not _ignored(rel, patterns), f"COPY {rel} is excluded by .dockerignore"
    assert _ignored("tests/unit/k8s/test_image.py", patterns) and _ignored(".venv", patterns)


def test_entrypoints_exist_and_the_chart_commands_are_installed():
    entry = [rest for word, rest in instructions() if word == "ENTRYPOINT"]
    assert entry == ['["recsys"]']
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'recsys = "recsys.cli.main:main"' in pyproject
    bin_dir = Path(sys.executable).parent
    # KubeRay runs `ray start` in the image; the chart's Spark Connect server, spark-submit.
    for script in ("recsys", "ray", "feast", "serve", "spark-submit"):
        assert (bin_dir / script).exists() or shutil.which(script), script


def test_the_installed_package_carries_the_serve_config_and_the_compiled_pipelines(tmp_path):
    """The image installs non-editable: what the code reads beside itself must be package data."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("recsys_platform-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "serving/config.yaml" in names
    for variant in ("training", "training-gpu", "monitoring"):
        assert f"pipelines/compiled/{variant}.yaml" in names


def test_the_runtime_installs_haproxy_for_serve():
    """The chart turns on Serve's HAProxy proxy (serve.fastProxy): the binary must be there."""
    runs = [rest for word, rest in stages()["runtime"] if word == "RUN"]
    assert any("apt-get install" in r and " haproxy" in r for r in runs)


def test_the_image_can_run_the_charts_spark_connect_server():
    """The chart's Spark Connect server is pyspark's spark-submit with the Connect jar pyspark
    ships: the runtime needs a Java 17+ runtime, and the build checks pyspark imports."""
    runs = [rest for word, rest in stages()["runtime"] if word == "RUN"]
    assert any("apt-get install" in r and " openjdk-17-jre-headless" in r for r in runs)
    (check,) = [r for w, r in stages()["build"] if w == "RUN" and "python -c" in r]
    assert "pyspark" in re.split(r"[\s,\"]+", check.split("python -c", 1)[1])
    import pyspark

    jars = Path(pyspark.__file__).parent / "jars"
    (jar,) = jars.glob(f"spark-connect_2.13-{pyspark.__version__}.jar")
    server = "org/apache/spark/sql/connect/service/SparkConnectServer.class"
    assert server in zipfile.ZipFile(jar).namelist()
