"""edgeloc train package."""
