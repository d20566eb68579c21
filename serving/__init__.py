"""The Ray Serve application: the multi-stage recommender over HTTP (see ``app.build_app``)."""
