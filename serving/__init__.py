"""The Ray Serve application: the multi-stage recommender over HTTP (see ``app.build_app``).

Every serving process imports this package before anything else of ours: a replica loads its
deployment class from ``serving.app``, the controller builds the app from it. So this is where
the processes that serve take their production settings:

- Feast's classes are decorated with typeguard's ``@typechecked``, which recompiles each
  decorated class from its source when Feast is imported: 2.5 s of Feast's 3.2 s import on 2
  CPUs, paid by every replica Serve starts (a replacement for a lost one, an autoscaled one)
  before it can answer. typeguard's own production mode (``python -O``) makes the decorator a
  no-op; a serving process takes that mode for this decorator alone. Serving builds no feature
  definitions (it reads the registry that ``recsys features apply`` wrote with the checks on),
  so nothing the checks guard runs here. A process that imported Feast earlier keeps its checks.
"""

import typeguard


def _typechecks_off(target=None, **_options):
    return (lambda t: t) if target is None else target


typeguard.typechecked = _typechecks_off
