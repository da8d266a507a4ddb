"""Pure measurements: image quality (PSNR, SSIM, LPIPS), fastMRI's volume scoring, and
the peak memory of a piece of work (measured in a fresh process where asked).

They sit below every cell runner and table; none of them runs a prior or a solver.
"""
