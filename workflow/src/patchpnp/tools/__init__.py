"""Tools no rule runs: the deepinv cross-check and the benchmarks behind config comments."""
