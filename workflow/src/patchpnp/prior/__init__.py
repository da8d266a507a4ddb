"""The diffusion prior: EDM2's magnitude-preserving U-Net, preconditioning, loss, EMA."""

from .ema import PowerEMA, gamma_to_sigma_rel, sigma_rel_to_gamma
from .loss import EDM2Loss
from .mp_layers import MPConv, MPFourier, mp_cat, mp_silu, mp_sum, normalize, pixel_norm
from .network import Block, UNet, count_parameters
from .precond import ImageSpaceDenoiser, Precond, coordinate_channels
from .schedule import learning_rate

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
