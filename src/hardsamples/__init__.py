"""Hard mini-batches (Algorithm 2) and mini-batch trimming: the study's package.

For your own training loop:

    from hardsamples import HardBatchSampler, trimmed_mean

Both are loaded on first use, so `import hardsamples.analysis` (the tables) still imports no torch.
"""

from __future__ import annotations

__all__ = ["HardBatchSampler", "trimmed_mean"]


def __getattr__(name: str):
    if name in __all__:
        from hardsamples import sampler

        return getattr(sampler, name)
    raise AttributeError(f"module 'hardsamples' has no attribute '{name}'")
