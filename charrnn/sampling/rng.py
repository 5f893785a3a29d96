"""The seeded uniforms every sample draws: SplitMix64, read as a counter.

Sample `seed` at step `t` (its t-th character, from 0) uses

    z = seed + (t + 1) * 0x9E3779B97F4A7C15            (mod 2**64)
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9            (mod 2**64)
    z = (z ^ (z >> 27)) * 0x94D049BB133111EB            (mod 2**64)
    z =  z ^ (z >> 31)
    u = (z >> 40) / 2**24                               (24 bits: exact in float32 and in a JS double)

which is the t-th output of Steele, Lea and Flood's SplitMix64 seeded with `seed`. Being a pure
function of (seed, step), it needs no generator object: a row can join a batch at any step, numpy
and JavaScript (BigInt) compute the same bits, and a seed's text does not depend on torch.
"""

from __future__ import annotations

import numpy as np

GAMMA = np.uint64(0x9E3779B97F4A7C15)
MIX1 = np.uint64(0xBF58476D1CE4E5B9)
MIX2 = np.uint64(0x94D049BB133111EB)
SCALE = np.float32(2.0**-24)


def splitmix64(seeds: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """The 64-bit output number `steps` of SplitMix64 seeded with `seeds` (uint64 arrays, broadcast)."""
    with np.errstate(over="ignore"):  # arithmetic mod 2**64 is the point
        z = seeds.astype(np.uint64) + (steps.astype(np.uint64) + np.uint64(1)) * GAMMA
        z = (z ^ (z >> np.uint64(30))) * MIX1
        z = (z ^ (z >> np.uint64(27))) * MIX2
    return z ^ (z >> np.uint64(31))


def uniforms(seeds: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """float32 uniforms in [0, 1), one per (seed, step) pair."""
    return (splitmix64(seeds, steps) >> np.uint64(40)).astype(np.float32) * SCALE


BLOCK = 256  # uniforms a row draws at a time (a pure function of the step: blocks change no number)


class RowUniforms:
    """One row's uniforms, computed BLOCK steps at a time: the same numbers as `uniforms(seed, step)`."""

    def __init__(self, seed: int) -> None:
        self.seed = np.array([seed], dtype=np.uint64)
        self.start = -BLOCK
        self.block = np.empty(0, dtype=np.float32)

    def at(self, step: int) -> float:
        if not self.start <= step < self.start + BLOCK:
            self.start = step
            self.block = uniforms(self.seed, np.arange(step, step + BLOCK, dtype=np.uint64))
        return float(self.block[step - self.start])


def uniform(seed: int, step: int) -> float:
    """One uniform (for tests and readers checking the rule by hand)."""
    return float(uniforms(np.array([seed], dtype=np.uint64), np.array([step], dtype=np.uint64))[0])
