"""Data stage (``data.smk``): fastMRI volumes, extraction into split files, the MNI152 demo."""
