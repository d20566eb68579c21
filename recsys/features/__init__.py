"""Feature tables and the feature store over Feast (:class:`recsys.features.store.FeatureStore`).

Feast's classes are decorated with typeguard's ``@typechecked``, which recompiles each
decorated class from its source when Feast is imported: most of Feast's import time, paid by
every process that reads features (a Serve replica before it can answer, each pipeline task,
the CLI). typeguard's own production mode (``python -O``) makes the decorator a no-op; a
process that imports Feast through this package takes that mode for this decorator alone.
Such a process builds no feature definitions: it reads the registry that ``feast apply`` wrote,
and ``feast apply`` runs as Feast's own CLI in a child process
(:func:`recsys.features.repository.feast_apply`), which imports Feast first and keeps the
checks, the first time a set of definitions is applied on the machine; later applies of the
same definitions skip them (``recsys.features.feast_cli``). A process that imported Feast
earlier keeps its checks too.
"""

import typeguard


def _typechecks_off(target=None, **_options):
    return (lambda t: t) if target is None else target


typeguard.typechecked = _typechecks_off
