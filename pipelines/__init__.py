"""Kubeflow Pipelines definitions: thin components over ``recsys`` functions, the training
pipeline, and the ways to run it (``kfp.local`` here, a KFP server on a cluster)."""
