"""Scope package of rsbench's mmengine registries (``default_scope="rsbench"`` imports ``rsbench.registry``)."""
