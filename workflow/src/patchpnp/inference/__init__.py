"""Inference stage (``infer.smk``): shifted-grid patches, the grid-cell runner, solver tuning.

The physics operators and the solvers they combine with the prior live beside this
folder, in ``patchpnp.physics`` and ``patchpnp.solvers``.
"""
