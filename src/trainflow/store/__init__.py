"""Versioned artifacts (``name:version`` / ``name:alias``): the embedded local store
(:mod:`.local`, built from :mod:`.refs`, :mod:`.records`, :mod:`.index` and :mod:`.blobs`)
and the W&B backend (:mod:`.wandb_backend`), which steps reach through the same calls
(:mod:`.protocol`)."""
