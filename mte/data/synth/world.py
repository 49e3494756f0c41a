"""Worlds: the rules that tie the latent factors to words and to sounds, shared by every seed generated in them.

Why a world separate from the seed: evaluating on music the model never heard needs a second dataset whose albums
and artists are new but whose *rules* are the ones the model learnt (``python -m mte.synth out=B seed=2`` against a
model trained on ``seed=1``). The seed draws albums, artists, reviews and noise; the world fixes

- which words speak of which factor: the genre words of each genre (style and feature words) and the words of
  each mood/tempo/timbre pole, and
- the factor → descriptor mapping (the random tanh layer and loadings in `mte.data.synth.descriptors`).

World 0 is the readable one: "happy" is a positive-valence word and "bebop" a jazz word, as in English, and its
descriptor mapping is the one this generator has always used. Any other world reassigns the same words at random
within their kind (style words among genres, feature words among genres, pole words among factor poles) and draws
new loadings: same vocabulary, other rules. Genre priors and the hand-made acoustic terms stay those of physics.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from mte.data.synth.common import _WORLD_SEED
from mte.data.synth.vocabulary import _GENRE_FEATURES, _GENRE_STYLES, _POLE_WORDS, GENRES

DEFAULT_WORLD = 0


@dataclass(frozen=True)
class WorldWords:
    """A world's factor vocabulary: genre → style and feature words, factor → (positive, negative) pole words."""

    genre_styles: dict[str, tuple[str, ...]]
    genre_features: dict[str, tuple[str, ...]]
    pole_words: dict[str, tuple[tuple[str, ...], tuple[str, ...]]]

    @property
    def genre_words(self) -> dict[str, tuple[str, ...]]:
        return {g: self.genre_styles[g] + self.genre_features[g] for g in GENRES}


def check_world(world: int) -> int:
    """A world is a non-negative integer (it seeds numpy generators)."""
    if isinstance(world, bool) or not isinstance(world, int | np.integer) or world < 0:
        raise ValueError(f"world must be an integer >= 0, got {world!r}")
    return int(world)


def world_rng(world: int, stream: int) -> np.random.Generator:
    """The generator of one kind of rule (0 = descriptor loadings, 1 = words); world 0's loadings are the original."""
    if world == DEFAULT_WORLD and stream == 0:
        return np.random.default_rng(_WORLD_SEED)
    return np.random.default_rng([_WORLD_SEED, world, stream])


def _reassign(rng: np.random.Generator, groups: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
    """The same words in groups of the same sizes, shuffled across groups."""
    pooled = [w for ws in groups.values() for w in ws]
    order = rng.permutation(len(pooled))
    out, start = {}, 0
    for key, ws in groups.items():
        out[key] = tuple(pooled[i] for i in order[start : start + len(ws)])
        start += len(ws)
    return out


@functools.lru_cache(maxsize=16)
def world_words(world: int = DEFAULT_WORLD) -> WorldWords:
    """The factor vocabulary of `world` (world 0: the English meanings)."""
    world = check_world(world)
    if world == DEFAULT_WORLD:
        return WorldWords(dict(_GENRE_STYLES), dict(_GENRE_FEATURES), dict(_POLE_WORDS))
    rng = world_rng(world, 1)
    styles = _reassign(rng, _GENRE_STYLES)
    features = _reassign(rng, _GENRE_FEATURES)
    poles = _reassign(rng, {f"{k}:{i}": pole[i] for k, pole in _POLE_WORDS.items() for i in (0, 1)})
    return WorldWords(styles, features, {k: (poles[f"{k}:0"], poles[f"{k}:1"]) for k in _POLE_WORDS})


@functools.lru_cache(maxsize=1)
def all_factor_words() -> frozenset[str]:
    """Every word that carries a factor in some world (the same set in all of them): kept out of filler and names."""
    genre = {w for ws in (*_GENRE_STYLES.values(), *_GENRE_FEATURES.values()) for w in ws}
    return frozenset(genre | {w for poles in _POLE_WORDS.values() for pole in poles for w in pole})
