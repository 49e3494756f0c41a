"""Real English words for the synthetic reviews and names, from the ``wordfreq`` package's frequency lists.

Why: templated chatter alone gave reviews ~800 distinct words, against tens of thousands in real MARD, so the
vocabulary never filled, no review word was ever unknown and the embedding table saw a toy workload. Filler
sentences drawn from real English unigram frequencies (Zipf's law included) give a vocabulary that grows with the
data the way real text does, real unknown-word rates on new albums, and realistic embedding-table traffic. The
filler is word salad (i.i.d. words, no grammar): it carries no information about the music, like most of a review.

Artist names are pairs of ordinary words ("The Restless Orchard") built from an *injective* map of
(seed, artist index): no two artists of a dir, and no two artists of different seeds (below `max_unique_seed`),
share a name, so a dir generated with another seed holds only unseen artists. The factor vocabulary (genre and
mood/tempo/timbre words of every world) is kept out of the filler and the names: those words carry the signal.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from importlib import metadata

import numpy as np

from mte.paths import resource_path

LEXICON_LIST = "large"  # wordfreq's English list with every word of frequency >= 1e-8 (~320k words)
_WORD_RE = re.compile(r"[a-z]+(?:'[a-z]+)*")  # what mte's tokenizer keeps as one word (inner apostrophes kept)
_NAME_RE = re.compile(r"[a-z]{4,10}")
_NAME_RANKS = (300, 40_000)  # name words: common content words, not the function words at the very top
_ARTIST_STRIDE = 1 << 16  # artist indices per seed in the injective name map (MARD needs ~30k)
# Substrings that keep a word out of names and filler: a demo dataset should not name a band with a slur.
_DENY = re.compile(
    r"fuck|shit|cunt|nigg|whore|slut|porn|pussy|retard|molest|pedophil|rapist|hitler|nazi|"
    r"^(?:bitch|fag|faggot|rape|dick|cock|tit|boob|penis|vagina|anal|sex|sexy|nude|naked|cum|piss|twat|wank|homo|"
    r"dyke|tranny|spic|chink|kike|gook|incest)(?:s|es|ed|ing|ty)?$"
)


@dataclass(frozen=True)
class Lexicon:
    """Filler words with their cumulative frequencies, and the two disjoint word pools of artist names."""

    words: tuple[str, ...]  # filler vocabulary, most frequent first
    cum: np.ndarray  # cumulative relative frequency (last value 1.0)
    pool_a: tuple[str, ...]  # first word of an artist name (Capitalised)
    pool_b: tuple[str, ...]  # second word (Capitalised); disjoint from pool_a
    mult: int  # multiplier of the name bijection, coprime to len(pool_a) * len(pool_b)
    source: str  # "wordfreq <version> en large": recorded in .synth.json

    @property
    def max_unique_seed(self) -> int:
        """Seeds 0 … max_unique_seed - 1 never share an artist name (with < 65,536 artists each)."""
        return len(self.pool_a) * len(self.pool_b) // _ARTIST_STRIDE

    def filler(self, rng: np.random.Generator, n: int) -> list[str]:
        """n words drawn independently with their real English frequencies."""
        idx = np.searchsorted(self.cum, rng.random(n), side="right")
        words = self.words
        return [words[i] for i in np.minimum(idx, len(words) - 1).tolist()]

    def artist_core(self, seed: int, index: int) -> tuple[str, str]:
        """The two words that make artist `index` of `seed` unique: an injective map of (seed, index)."""
        n_b = len(self.pool_b)
        size = len(self.pool_a) * n_b
        u = (seed * _ARTIST_STRIDE + index) % size
        v = (u * self.mult) % size  # a bijection of [0, size): neighbouring indices get unrelated words
        return self.pool_a[v // n_b], self.pool_b[v % n_b]

    def title_word(self, rng: np.random.Generator) -> str:
        """One capitalised word for album and track titles (not unique: titles repeat, as on real shelves)."""
        k = int(rng.integers(len(self.pool_a) + len(self.pool_b)))
        return self.pool_a[k] if k < len(self.pool_a) else self.pool_b[k - len(self.pool_a)]


class FillerStream:
    """One album's stream of filler words, drawn in blocks: one numpy call per 1,024 words, not one per sentence."""

    _BLOCK = 1024

    def __init__(self, rng: np.random.Generator) -> None:
        self._rng = rng
        self._buf: list[str] = []
        self._pos = 0

    def take(self, n: int) -> list[str]:
        """The next n words of the stream (the stream depends only on the generator's seed)."""
        if self._pos + n > len(self._buf):
            self._buf = self._buf[self._pos :] + lexicon().filler(self._rng, max(n, self._BLOCK))
            self._pos = 0
        out = self._buf[self._pos : self._pos + n]
        self._pos += n
        return out


def _stopwords() -> frozenset[str]:
    text = resource_path("stopwords.txt").read_text(encoding="utf-8")
    return frozenset(w.strip() for w in text.splitlines() if w.strip() and not w.lstrip().startswith("#"))


@functools.lru_cache(maxsize=1)
def lexicon() -> Lexicon:
    """Load wordfreq's English list once per process (~0.5 s) and derive the filler and name vocabularies."""
    import wordfreq

    from mte.data.synth.world import all_factor_words

    excluded = all_factor_words()
    stop = _stopwords()
    words: list[str] = []
    freqs: list[float] = []
    names: list[str] = []
    # The list is bucketed by frequency: bucket i holds the words of frequency 10 ** (-i / 100).
    for bucket, bucket_words in enumerate(wordfreq.get_frequency_list("en", wordlist=LEXICON_LIST)):
        freq = 10.0 ** (-bucket / 100.0)
        for w in bucket_words:
            if not _WORD_RE.fullmatch(w) or w in excluded or _DENY.search(w):
                continue
            if _NAME_RANKS[0] <= len(words) < _NAME_RANKS[1] and _NAME_RE.fullmatch(w) and w not in stop:
                names.append(w.capitalize())
            words.append(w)
            freqs.append(freq)
    cum = np.cumsum(np.asarray(freqs))
    pool_a, pool_b = tuple(names[0::2]), tuple(names[1::2])
    size = len(pool_a) * len(pool_b)
    mult = 0x9E3779B97F4A7C15 % size
    while math.gcd(mult, size) != 1:
        mult += 1
    return Lexicon(
        words=tuple(words),
        cum=cum / cum[-1],
        pool_a=pool_a,
        pool_b=pool_b,
        mult=mult,
        source=f"wordfreq {metadata.version('wordfreq')} en {LEXICON_LIST}",
    )
