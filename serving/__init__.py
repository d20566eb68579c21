"""The Ray Serve application: the multi-stage recommender over HTTP (see ``app.build_app``).

Every serving process imports this package before anything else of ours: a replica loads its
deployment class from ``serving.app``, the controller builds the app from it. So this is where
the processes that serve take their production settings: Feast imported without typeguard's
recompiling of its classes (:mod:`recsys.features`), so that a new replica (a replacement for a
lost one, an autoscaled one) does not wait for it before it can answer.
"""

import recsys.features  # noqa: F401 - Feast's classes as written, before Feast is imported
