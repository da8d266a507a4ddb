"""The diffusion prior: EDM2's magnitude-preserving U-Net, preconditioning, loss, EMA.

The names below are imported on first use (a module ``__getattr__``): they bring torch,
and Snakemake imports :mod:`patchpnp.prior.spec` to plan the workflow, which must stay
quick and torch-free (every Snakemake start, every cluster job's included, plans it).
"""

__all__ = [
    "Block",
    "EDM2Loss",
    "ImageSpaceDenoiser",
    "MPConv",
    "MPFourier",
    "PowerEMA",
    "Precond",
    "UNet",
    "coordinate_channels",
    "count_parameters",
    "gamma_to_sigma_rel",
    "learning_rate",
    "mp_cat",
    "mp_silu",
    "mp_sum",
    "normalize",
    "pixel_norm",
    "sigma_rel_to_gamma",
]


def __getattr__(name: str):
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    # Imports, not names in strings: the code digests (pipeline.provenance) follow them.
    from . import ema, loss, mp_layers, network, precond, schedule

    for module in (ema, loss, mp_layers, network, precond, schedule):
        if name in vars(module):
            globals()[name] = value = vars(module)[name]
            return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
