"""Recommenders: the manifest (``manifest``, light: no torch), the contract (``base``), the
baselines (``popularity``, ``ease``, ``rp3beta``), the two-tower model, the ranker, the
multi-stage model (``multistage``) and the kinds by name (``kinds``).

This package's ``__init__`` imports nothing, so that reading a manifest (the registry, the
monitor) never loads torch.
"""
