"""Versioned artifacts (``name:version`` / ``name:alias``): the embedded local store
(:mod:`.local`: SQLite index and content-addressed files) and the W&B backend
(:mod:`.wandb_backend`), which steps reach through the same calls."""
