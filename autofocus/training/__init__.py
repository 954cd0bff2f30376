"""Training of the two focus models on data rendered by the project's simulator."""
