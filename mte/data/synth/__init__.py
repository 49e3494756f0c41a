"""Synthetic MARD: writes raw directories in the exact MARD layout (metadata, reviews, AcousticBrainz descriptors).

Why it exists: the real MARD cannot be downloaded here, yet every stage (prepare → train → evaluate → search)
needs realistic input, and the tests need a test bed whose defects are known exactly. So this module is both
the embedded default dataset and the ground truth for the prepare step's manifest.

How text and audio are linked (and why only imperfectly): every album draws latent factors — a root genre
(skewed like Amazon's), mood (valence, arousal), tempo and timbre (brightness, distortion, acousticness) — from
genre priors plus an artist offset. The factors drive the descriptors non-linearly (the world's random tanh layer
plus hand-made terms: MFCC mean/cov, spectral centroid/rolloff, zero-crossing rate, dissonance, bpm, …, with
per-track noise) and, independently, a *small* part of each review's words (genre, mood, tempo and timbre
vocabulary, noisy and sometimes contradicting). Everything else in a review is ordinary Amazon chatter
(shipping, gifts, price, the CD case, the artist's name, track titles, nostalgia, sound quality) and filler of
real English words at their real frequencies (`lexicon`), so the vocabulary is real-sized. No token
that identifies an album (amazon-id, mbid, …) ever appears in a review, so a model can only learn the
text↔audio link through the factors — which is the point of the benchmark.

Seeds and worlds (`world`): the seed draws albums and artists, the world the rules (which words and which
sounds go with which factor). Another seed in the same world gives new albums by artists that never occur in the
first seed's dir (`lexicon.Lexicon.artist_core` is injective), under the same rules: an unseen-artist test set.

Modules, in the order of the flow: `vocabulary` (genres, priors, factor words), `world`, `lexicon` (wordfreq),
`common` (scale, file names, quirk rates, ids), `plan` (the global plan and its chunks), `albums`,
`descriptors`, `templates` + `text` (metadata and review lines), `build` (workers, `generate`).

Layout and proportions: ``scale`` is decided by ``proportions``. ``"real"`` reproduces the real MARD
proportions (65,566 albums, 28,403 with a descriptor, of which 8,683 also have reviews; 263,525 reviews, 84,747
of them on paired albums); ``"demo"`` keeps most albums usable (80% paired, 8% descriptor-only, 12% review-only)
so that a 600-album demo has ~480 training-ready albums; ``"auto"`` (default) picks ``"real"`` at full size.
Review counts per album are heavy-tailed (lognormal shares) with the real means (9.76 for paired albums,
4.81 for review-only ones).

Real-data quirks (`QUIRKS`) are injected at small rates; with quirks on, each appears at least once (given
≥ 10 albums), and the exact counts (plus the affected files / line numbers for the rare ones) are written to
``DIR/.synth.json`` so tests and the prepare manifest can be cross-checked. Line numbers there are 1-based.

Determinism: the same (albums, seed, world, tracks_per_album, quirks, proportions) gives byte-identical files
whatever ``workers`` is (with the same wordfreq data, recorded in ``.synth.json``): a plan (counts, categories,
quirk slots) is drawn in the parent from ``seed``; each album then uses its own generators
(``np.random.default_rng([seed, k, album_index])``), and matrix-vector products avoid BLAS (its threaded summation
order is not guaranteed).
"""

from mte.data.synth.build import generate, summary_line
from mte.data.synth.common import FULL_SCALE, QUIRKS, SYNTH_INFO_FILE, amazon_id, normalize_quirks
from mte.data.synth.vocabulary import GENRE_WORDS, GENRES

__all__ = [
    "FULL_SCALE",
    "GENRES",
    "GENRE_WORDS",
    "QUIRKS",
    "SYNTH_INFO_FILE",
    "amazon_id",
    "generate",
    "normalize_quirks",
    "summary_line",
]
