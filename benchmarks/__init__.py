"""edgeloc benchmarks package."""
