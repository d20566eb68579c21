"""Render the Helm chart offline (Helm v4's engine, through helm-python-sdk) and write or check
the committed manifests for plain `kubectl apply`.

    python k8s/render.py            # writes k8s/rendered/<env>.yaml for every k8s/values-<env>.yaml
    python k8s/render.py --check    # exit 1, naming the files, when a rendering is stale
    python k8s/render.py --values my.yaml [--namespace NS]   # one values file, to stdout

The tests import this file: what they validate is what `make k8s` writes.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import yaml

K8S = Path(__file__).resolve().parent
CHART = K8S / "chart"
RENDERED = K8S / "rendered"
RELEASE = "recsys"
NAMESPACE = "kubeflow"  # where standalone Kubeflow Pipelines runs its tasks (they mount the claim)
HEADER = """\
# Rendered from k8s/chart with k8s/{values} (release "{release}", namespace "{namespace}").
# Do not edit: change the chart or the values and run `make k8s`. Apply with
#   kubectl apply -n {namespace} -f k8s/rendered/{env}.yaml   (Secrets first: see the README)
"""


class ValuesError(ValueError):
    """Values the chart's schema rejects; the message names the key."""


def environments() -> dict[str, Path]:
    """``{env: k8s/values-<env>.yaml}``."""
    return {p.stem.removeprefix("values-"): p for p in sorted(K8S.glob("values-*.yaml"))}


def load_values(path: str | Path) -> dict:
    values = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(values, dict):
        raise ValuesError(f"{path}: expected a mapping of values, got {type(values).__name__}")
    return values


def _chart():
    import helm_python

    # Helm logs (INFO) that files/serve-config.yaml is a symlink: keep its warnings only.
    helm_python.enable_logging(logging.WARNING)
    return helm_python.Chart.load(CHART)


def render(values: dict | None = None, *, release: str = RELEASE, namespace: str = NAMESPACE):
    """The chart's manifests for ``values`` (over values.yaml), as Helm would install them.

    Returns:
        ``{template path: rendered text}``, manifests only (no NOTES.txt, no empty files).

    Raises:
        ValuesError: values the schema rejects (the message names the key).
    """
    import helm_python

    with _chart() as chart:
        try:
            # Helm checks the values against values.schema.json first, as on install.
            out = chart.render(values, name=release, namespace=namespace, is_install=True)
        except helm_python.HelmValuesError as exc:
            raise ValuesError(str(exc).strip()) from None
    return {
        path: text
        for path, text in sorted(out.items())
        if not path.endswith("NOTES.txt") and text.strip()
    }


def notes(values: dict | None = None) -> str:
    with _chart() as chart:
        out = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    return next(text for path, text in out.items() if path.endswith("NOTES.txt"))


def documents(manifests: dict[str, str]) -> list[dict]:
    """Every object in the rendered manifests, in template order."""
    return [d for text in manifests.values() for d in yaml.safe_load_all(text) if d]


def lint(values: dict | None = None) -> dict:
    """``helm lint --strict`` on the chart with ``values``."""
    import helm_python

    return helm_python.lint(CHART, values, strict=True, namespace=NAMESPACE)


def rendering(env: str, values_file: Path) -> str:
    """The committed text of ``k8s/rendered/<env>.yaml``."""
    manifests = render(load_values(values_file))
    parts = [HEADER.format(values=values_file.name, release=RELEASE, namespace=NAMESPACE, env=env)]
    for path, text in manifests.items():
        parts.append(f"---\n# Source: {path.removeprefix(RELEASE + '/')}\n{text.strip()}\n")
    return "".join(parts)


def stale() -> list[str]:
    """Renderings that differ from what the chart renders now (or are missing)."""
    out = []
    for env, values_file in environments().items():
        target = RENDERED / f"{env}.yaml"
        if not target.exists() or target.read_text() != rendering(env, values_file):
            out.append(str(target.relative_to(K8S.parent)))
    return out


def write_all() -> list[Path]:
    RENDERED.mkdir(exist_ok=True)
    written = []
    for env, values_file in environments().items():
        target = RENDERED / f"{env}.yaml"
        tmp = target.with_suffix(".yaml.tmp")
        tmp.write_text(rendering(env, values_file))
        tmp.replace(target)
        written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail when a rendering is stale")
    parser.add_argument("--values", type=Path, help="render this values file to stdout")
    parser.add_argument("--namespace", default=NAMESPACE, help="with --values: the namespace")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    try:
        if args.values:
            manifests = render(load_values(args.values), namespace=args.namespace)
            sys.stdout.write("".join(f"---\n{t.strip()}\n" for t in manifests.values()))
            return 0
        if args.check:
            old = stale()
            for path in old:
                print(f"{path} is stale: run `make k8s`", file=sys.stderr)
            return 1 if old else 0
        for path in write_all():
            print(f"wrote {path.relative_to(K8S.parent)}")
        return 0
    except ValuesError as exc:
        print(f"values rejected by k8s/chart/values.schema.json:\n{exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
