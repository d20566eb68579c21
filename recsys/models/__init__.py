"""Recommenders: the manifest (``manifest``, light: no torch), the contract (``base``) and what
a Ray Train stage trains (``trainable``), the baselines (``popularity``, ``ease``,
``rp3beta``), one package per composite model (``two_tower/``, ``rankers/``: ``gbdt`` and
``dcn``, ``multistage/``), what the neural models share (``encoding``, ``neural``) and the
kinds by name (``kinds``).

This package's ``__init__`` imports nothing, so that reading a manifest (the registry, the
monitor) never loads torch.
"""
