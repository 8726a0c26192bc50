"""Development and CI tooling (not installed with the package): ``python -m tools.<name>``."""
