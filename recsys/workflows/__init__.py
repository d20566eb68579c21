"""The application layer's jobs: the quickstart, the training pipeline's run and result, what a
retrain decision starts, the closed-loop demo (replay, drift, retrain, hot reload) and the
quality run. The CLI calls them and passes what lives above (``pipelines.client``'s runs)."""
