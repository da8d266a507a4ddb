"""patchpnp: patch-based plug-and-play inference with diffusion priors for MRI."""

__version__ = "0.1.0"
