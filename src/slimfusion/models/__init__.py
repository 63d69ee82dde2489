"""Model loading, saving, families and the built-in zoo."""
