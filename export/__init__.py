"""edgeloc export package."""
