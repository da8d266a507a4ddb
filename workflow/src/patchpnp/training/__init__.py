"""Training the diffusion priors: data, batch sampling per scheme, the loop, checkpoints."""
