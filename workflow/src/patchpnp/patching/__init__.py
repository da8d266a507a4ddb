"""Patch-based inference, the paper's core: shifted-grid tiling, the patch denoiser and
its micro-batches with their memory model.

A low layer: it stands only on the prior's preconditioning (coordinate channels) and
the runtime's keyed draws, so that solvers, the deepinv export, training checks,
inference cells and memory profiles all build on it.
"""
