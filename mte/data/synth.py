"""Synthetic MARD: writes raw directories in the exact MARD layout (metadata, reviews, AcousticBrainz descriptors).

Why it exists: the real MARD cannot be downloaded here, yet every stage (prepare → train → evaluate → search)
needs realistic input, and the tests need a test bed whose defects are known exactly. So this module is both
the embedded default dataset and the ground truth for the prepare step's manifest.

How text and audio are linked (and why only imperfectly): every album draws latent factors — a root genre
(skewed like Amazon's), mood (valence, arousal), tempo and timbre (brightness, distortion, acousticness) — from
genre priors plus an artist offset. The factors drive the descriptors non-linearly (a fixed random tanh layer
plus hand-made terms: MFCC mean/cov, spectral centroid/rolloff, zero-crossing rate, dissonance, bpm, …, with
per-track noise) and, independently, a *small* part of each review's words (genre, mood, tempo and timbre
vocabulary, noisy and sometimes contradicting). Everything else in a review is ordinary Amazon chatter
(shipping, gifts, price, the CD case, the artist's name, track titles, nostalgia, sound quality). No token
that identifies an album (amazon-id, mbid, …) ever appears in a review, so a model can only learn the
text↔audio link through the factors — which is the point of the benchmark.

Layout and proportions: ``scale`` is decided by ``proportions``. ``"real"`` reproduces the real MARD
proportions (65,566 albums, 28,403 with a descriptor, of which 8,683 also have reviews; 263,525 reviews, 84,747
of them on paired albums); ``"demo"`` keeps most albums usable (80% paired, 8% descriptor-only, 12% review-only)
so that a 600-album demo has ~480 training-ready albums; ``"auto"`` (default) picks ``"real"`` at full size.
Review counts per album are heavy-tailed (lognormal shares) with the real means (9.76 for paired albums,
4.81 for review-only ones).

Real-data quirks (`QUIRKS`) are injected at small rates; with quirks on, each appears at least once (given
≥ 10 albums), and the exact counts (plus the affected files / line numbers for the rare ones) are written to
``DIR/.synth.json`` so tests and the prepare manifest can be cross-checked. Line numbers there are 1-based.

Determinism: the same (albums, seed, tracks_per_album, quirks, proportions) gives byte-identical files whatever
``workers`` is: a plan (counts, categories, quirk slots) is drawn in the parent from ``seed``; each album then
uses its own ``np.random.default_rng([seed, 0, album_index])``, and matrix-vector products avoid BLAS (its
threaded summation order is not guaranteed).
"""

from __future__ import annotations

import functools
import itertools
import math
import multiprocessing as mp
import os
import random
import shutil
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import orjson

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

FULL_SCALE = {"albums": 65566, "reviews": 263525, "descriptor_files": 28403}
# Real MARD: albums with both descriptors and reviews, and their reviews.
_REAL_PAIRED = {"albums": 8683, "reviews": 84747}
_DEMO_SHARES = (0.80, 0.08, 0.12)  # paired, descriptor-only, review-only
_PAIRED_MEAN = _REAL_PAIRED["reviews"] / _REAL_PAIRED["albums"]  # 9.76
_TEXT_ONLY_MEAN = (FULL_SCALE["reviews"] - _REAL_PAIRED["reviews"]) / (
    FULL_SCALE["albums"] - FULL_SCALE["descriptor_files"]
)  # 4.81

SYNTH_INFO_FILE = ".synth.json"  # hidden: prepare ignores unknown files
_META_FILE = "mard_metadata.json"
_REVIEWS_FILE = "mard_reviews.json"
_DESC_DIR = "acousticbrainz_descriptors"
_FORMAT_VERSION = 1
_WORLD_SEED = 0x4D5445  # "MTE": the factor→descriptor mapping is fixed, only the albums change with `seed`

# Quirk name → rate per unit (file, album or review line); None = structural (album categories).
_QUIRK_RATES: dict[str, float | None] = {
    "album_without_descriptor": None,
    "descriptor_without_reviews": None,
    "broken_descriptor": 0.0002,
    "missing_mfcc": 0.0003,
    "nan_value": 0.0003,
    "bad_filename": 0.0002,
    "descriptor_without_genre": 0.45,
    "broken_metadata": 0.0002,
    "duplicate_review": 0.004,
    "empty_review": 0.003,
    "long_review": 0.002,
    "html_entities": 0.02,
    "non_ascii": 0.02,
    "non_utf8_review": 0.0005,
}
QUIRKS: tuple[str, ...] = tuple(_QUIRK_RATES)
# Rare quirks whose affected items are listed in .synth.json (the frequent ones only get counts).
_LISTED_QUIRKS = frozenset(
    {
        "broken_descriptor",
        "missing_mfcc",
        "nan_value",
        "bad_filename",
        "broken_metadata",
        "duplicate_review",
        "empty_review",
        "long_review",
        "non_utf8_review",
    }
)
# Mutually exclusive per-file and per-review quirk categories (code = position + 1; 0 = none).
_FILE_CATS = ("broken_descriptor", "missing_mfcc", "nan_value", "bad_filename")
_REVIEW_CATS = ("empty_review", "long_review", "html_entities", "non_ascii", "non_utf8_review")

# --------------------------------------------------------------------------------------------------------------
# Genres and factor vocabulary
# --------------------------------------------------------------------------------------------------------------

GENRES: tuple[str, ...] = (
    "Pop",
    "Rock",
    "Jazz",
    "Classical",
    "Country",
    "Dance & Electronic",
    "R&B",
    "Rap & Hip-Hop",
    "Alternative Rock",
    "Metal",
    "Folk",
    "Blues",
    "World Music",
    "New Age",
    "Latin Music",
    "Reggae",
)
_GENRE_WEIGHTS = np.array(
    [0.22, 0.20, 0.08, 0.08, 0.06, 0.06, 0.05, 0.05, 0.05, 0.04, 0.03, 0.025, 0.02, 0.015, 0.015, 0.01]
)
_GENRE_WEIGHTS = _GENRE_WEIGHTS / _GENRE_WEIGHTS.sum()
# Factor order everywhere: valence, arousal, bpm, brightness, distortion, acousticness.
_FACTORS = ("valence", "arousal", "bpm", "brightness", "distortion", "acousticness")
_GENRE_PRIORS = np.array(
    [
        [0.5, 0.3, 115, 0.4, 0.15, 0.30],  # Pop
        [0.1, 0.5, 125, 0.2, 0.55, 0.25],  # Rock
        [0.2, -0.2, 110, -0.1, 0.05, 0.80],  # Jazz
        [0.0, -0.5, 85, -0.3, 0.00, 0.95],  # Classical
        [0.3, 0.0, 110, 0.2, 0.10, 0.70],  # Country
        [0.4, 0.7, 126, 0.6, 0.20, 0.05],  # Dance & Electronic
        [0.3, 0.0, 95, 0.0, 0.10, 0.30],  # R&B
        [-0.1, 0.4, 92, 0.1, 0.25, 0.10],  # Rap & Hip-Hop
        [-0.2, 0.4, 120, 0.1, 0.50, 0.30],  # Alternative Rock
        [-0.6, 0.9, 150, 0.3, 0.95, 0.05],  # Metal
        [0.1, -0.4, 100, 0.0, 0.05, 0.90],  # Folk
        [-0.3, 0.0, 95, -0.1, 0.30, 0.60],  # Blues
        [0.3, 0.1, 105, 0.1, 0.05, 0.75],  # World Music
        [0.3, -0.8, 75, -0.2, 0.00, 0.60],  # New Age
        [0.6, 0.5, 115, 0.3, 0.05, 0.60],  # Latin Music
        [0.5, -0.1, 80, -0.1, 0.10, 0.40],  # Reggae
    ]
)
_ARTIST_SD = np.array([0.20, 0.15, 8.0, 0.20, 0.10, 0.10])
_ALBUM_SD = np.array([0.30, 0.25, 12.0, 0.25, 0.12, 0.12])
_TRACK_SD = np.array([0.10, 0.10, 3.0, 0.08, 0.04, 0.04])
_FACTOR_LO = np.array([-1.0, -1.0, 50.0, -1.0, 0.0, 0.0])
_FACTOR_HI = np.array([1.0, 1.0, 210.0, 1.0, 1.0, 1.0])

# One-token words only (the tokenizer keeps them whole), disjoint across genres and absent from the chatter.
# Styles read as modifiers/nouns ("Great {w} album"), features as things you hear ("I love the {w} on this").
_GENRE_STYLES: dict[str, tuple[str, ...]] = {
    "Pop": ("pop", "bubblegum", "mainstream"),
    "Rock": ("rock", "arena", "garage"),
    "Jazz": ("jazz", "bebop", "swing"),
    "Classical": ("classical", "baroque", "symphonic"),
    "Country": ("country", "nashville", "honkytonk"),
    "Dance & Electronic": ("dance", "techno", "edm"),
    "R&B": ("soul", "motown", "rnb"),
    "Rap & Hip-Hop": ("rap", "hiphop", "gangsta"),
    "Alternative Rock": ("alternative", "indie", "grunge"),
    "Metal": ("metal", "thrash", "doom"),
    "Folk": ("folk", "troubadour", "campfire"),
    "Blues": ("blues", "delta", "juke"),
    "World Music": ("african", "celtic", "ethnic"),
    "New Age": ("ambient", "meditation", "spa"),
    "Latin Music": ("latin", "salsa", "tango"),
    "Reggae": ("reggae", "ska", "dub"),
}
_GENRE_FEATURES: dict[str, tuple[str, ...]] = {
    "Pop": ("hooks", "singalongs"),
    "Rock": ("riffs", "guitars"),
    "Jazz": ("saxophone", "improvisation"),
    "Classical": ("orchestra", "concertos"),
    "Country": ("fiddle", "twang"),
    "Dance & Electronic": ("remixes", "drops"),
    "R&B": ("grooves", "falsetto"),
    "Rap & Hip-Hop": ("rhymes", "verses"),
    "Alternative Rock": ("angst", "jangle"),
    "Metal": ("shredding", "headbanging"),
    "Folk": ("banjo", "storytelling"),
    "Blues": ("harmonica", "slide"),
    "World Music": ("drumming", "chants"),
    "New Age": ("chimes", "soundscapes"),
    "Latin Music": ("congas", "mariachi"),
    "Reggae": ("riddims", "toasting"),
}
GENRE_WORDS: dict[str, tuple[str, ...]] = {g: _GENRE_STYLES[g] + _GENRE_FEATURES[g] for g in _GENRE_STYLES}
# (positive pole, negative pole) per continuous factor.
_POLE_WORDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "valence": (
        ("happy", "uplifting", "joyful", "cheerful", "sunny"),
        ("sad", "melancholy", "gloomy", "haunting", "bleak"),
    ),
    "arousal": (
        ("energetic", "intense", "aggressive", "explosive", "frenetic"),
        ("calm", "mellow", "gentle", "peaceful", "soothing"),
    ),
    "bpm": (
        ("fast", "upbeat", "uptempo", "frantic", "speedy"),
        ("slow", "languid", "unhurried", "downtempo", "plodding"),
    ),
    "brightness": (
        ("bright", "crisp", "sparkling", "shimmering", "airy"),
        ("dark", "murky", "muffled", "dull", "boomy"),
    ),
    "distortion": (
        ("distorted", "fuzzy", "crunchy", "gritty", "abrasive"),
        ("clean", "polished", "pristine", "smooth", "glossy"),
    ),
    "acousticness": (
        ("acoustic", "unplugged", "organic", "stripped", "intimate"),
        ("electronic", "synthetic", "programmed", "processed", "synthesized"),
    ),
}
# Descriptor genre tags (ID3/MusicBrainz style) per root genre: noisier than Amazon's root genre.
_GENRE_TAGS: dict[str, tuple[str, ...]] = {
    "Pop": ("Pop", "pop", "Pop/Rock", "Adult Contemporary"),
    "Rock": ("Rock", "rock", "Classic Rock", "Rock/Pop"),
    "Jazz": ("Jazz", "jazz", "Vocal Jazz", "Bebop"),
    "Classical": ("Classical", "classical", "Baroque", "Orchestral"),
    "Country": ("Country", "country", "Americana"),
    "Dance & Electronic": ("Electronic", "Dance", "Electronica", "House"),
    "R&B": ("R&B", "Soul", "RnB", "Funk"),
    "Rap & Hip-Hop": ("Hip-Hop", "Rap", "Hip Hop", "hiphop"),
    "Alternative Rock": ("Alternative", "Indie Rock", "alternative rock", "Grunge"),
    "Metal": ("Metal", "Heavy Metal", "metal", "Thrash Metal"),
    "Folk": ("Folk", "folk", "Singer-Songwriter"),
    "Blues": ("Blues", "blues", "Electric Blues"),
    "World Music": ("World", "world", "Celtic", "Afrobeat"),
    "New Age": ("New Age", "Ambient", "new age"),
    "Latin Music": ("Latin", "Salsa", "latin"),
    "Reggae": ("Reggae", "reggae", "Ska", "Dub"),
}
_SUBGENRES: dict[str, tuple[str, ...]] = {
    "Pop": ("Adult Contemporary", "Dance Pop", "Teen Pop"),
    "Rock": ("Classic Rock", "Hard Rock", "Album-Oriented Rock (AOR)"),
    "Jazz": ("Bebop", "Cool Jazz", "Vocal Jazz", "Jazz Fusion"),
    "Classical": ("Symphonies", "Chamber Music", "Opera & Vocal"),
    "Country": ("Today's Country", "Classic Country", "Bluegrass"),
    "Dance & Electronic": ("House", "Techno", "Electronica"),
    "R&B": ("Soul", "Funk", "Contemporary R&B"),
    "Rap & Hip-Hop": ("East Coast", "West Coast", "Gangsta & Hardcore"),
    "Alternative Rock": ("Indie & Lo-Fi", "Grunge", "Britpop"),
    "Metal": ("Thrash & Speed Metal", "Death Metal", "Pop Metal"),
    "Folk": ("Contemporary Folk", "Traditional Folk"),
    "Blues": ("Chicago Blues", "Delta Blues", "Electric Blues"),
    "World Music": ("Africa", "Celtic", "Caribbean & Cuba"),
    "New Age": ("Meditation", "Healing", "Relaxation"),
    "Latin Music": ("Salsa", "Latin Pop", "Tango"),
    "Reggae": ("Roots Reggae", "Dancehall", "Ska"),
}

# --------------------------------------------------------------------------------------------------------------
# Names (ASCII only, and free of factor vocabulary: tests check both)
# --------------------------------------------------------------------------------------------------------------

_ADJ = (
    "Silver", "Golden", "Electric", "Velvet", "Broken", "Hidden", "Wild", "Lonely", "Crimson", "Northern",
    "Secret", "Restless", "Midnight", "Paper", "Glass", "Iron", "Burning", "Quiet", "Endless", "Little",
    "Lucky", "Wandering", "Frozen", "Hollow", "Blue", "Scarlet", "Emerald", "Falling", "Rising", "Distant",
)  # fmt: skip
_NOUN = (
    "Harbor", "River", "Mountain", "Garden", "Highway", "Window", "Mirror", "Lantern", "Engine", "Ocean",
    "Shadow", "Circus", "Railroad", "Valley", "Island", "Kingdom", "Desert", "Satellite", "Orchard", "Compass",
    "Castle", "Forest", "Horizon", "Carnival", "Lighthouse", "Canyon", "Meadow", "Thunder", "Feather", "Bridge",
)  # fmt: skip
_NOUN_PL = tuple(n + ("es" if n.endswith("s") else "s") for n in _NOUN)
_FIRST = (
    "John", "Mary", "David", "Linda", "Michael", "Susan", "James", "Karen", "Robert", "Lisa", "William", "Nancy",
    "Richard", "Betty", "Thomas", "Helen", "Charles", "Sandra", "Daniel", "Donna", "Paul", "Carol", "Mark",
    "Ruth", "George", "Sharon", "Steven", "Laura", "Kevin", "Emily", "Brian", "Amy", "Gary", "Anna", "Eric",
)  # fmt: skip
_LAST = (
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Miller", "Davis", "Wilson", "Anderson", "Taylor",
    "Thomas", "Moore", "Martin", "Jackson", "Thompson", "White", "Harris", "Clark", "Lewis", "Walker", "Hall",
    "Allen", "Young", "King", "Wright", "Hill", "Green", "Adams", "Baker", "Nelson", "Carter", "Mitchell",
)  # fmt: skip
_VERB_ING = (
    "Running", "Dreaming", "Waiting", "Falling", "Dancing", "Chasing", "Leaving", "Burning", "Calling",
    "Walking", "Holding", "Breaking", "Drifting", "Shining", "Crying", "Flying",
)  # fmt: skip
_LABELS = (
    "Columbia", "Rykodisc", "Atlantic", "Capitol", "Elektra", "Verve", "Blue Note", "Sony Music", "Warner Bros.",
    "Island", "Epic", "Virgin", "Mercury", "Geffen", "Deutsche Grammophon", "Nonesuch", "Sub Pop", "Rounder",
)  # fmt: skip
_CHORD_KEYS = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
_ESSENTIA_BUILDS = (
    "70f2e5ece6736b2c40cc944ad0e695b16b925413",
    "26c37b627ab5a2028d412893e0969599b764ad4d",
    "cead25079874084f62182a551b7393616cd33d87",
)

# --------------------------------------------------------------------------------------------------------------
# Review text: templated Amazon chatter (none of it mentions factor vocabulary) and factor sentences
# --------------------------------------------------------------------------------------------------------------

_OPEN_POS = (
    "I have been a fan of {artist} for years and this is one of their best.",
    "This album is a masterpiece.",
    "What can I say, {title} is simply great.",
    "I bought this after hearing {song} on the radio.",
    "Wow.",
    "Finally got around to buying {title} and I am glad I did.",
    "{artist} delivers again.",
    "This one grew on me after a few listens.",
    "I can't stop listening to this CD.",
    "One of my all time favorite albums.",
    "I was not sure what to expect, but {title} blew me away.",
    "This is the album that made me a fan of {artist}.",
)
_OPEN_NEG = (
    "I really wanted to like this album.",
    "What a letdown.",
    "I don't understand the hype around {title}.",
    "{artist} can do much better than this.",
    "I returned this after two listens.",
    "Honestly, this was a waste of money.",
    "I expected a lot more from {artist}.",
)
_OPEN_MID = (
    "This is a decent album but not their best.",
    "Some good songs, some filler.",
    "{title} is a mixed bag.",
    "It's OK, nothing special.",
    "Not bad, but it took me a while to get into it.",
)
_TRACKS_POS = (
    "Standout tracks include {song}, {song2} and {song3}.",
    "{song} alone is worth the price of the CD.",
    "My favorite song is {song}.",
    "I skip {song} every time, but the rest is solid.",
    "{song} gives me chills every time I hear it.",
    "The opening track, {song}, sets the tone for the whole record.",
    "{song} and {song2} are the highlights for me.",
    "I bought it for {song} and stayed for the rest.",
    "Track {n} ({song}) is the best thing on here.",
)
_TRACKS_NEG = (
    "{song} is the only decent track.",
    "I gave up after {song}.",
    "Even {song} sounds tired here.",
    "Nothing here comes close to their earlier work, except maybe {song}.",
    "The version of {song} here is nothing like the one I remember.",
)
_VOCALS_POS = (
    "The vocals are outstanding.",
    "The lyrics are thoughtful and honest.",
    "The harmonies on {song} are beautiful.",
    "Great songwriting from start to finish.",
    "Every song tells a story.",
    "The singer's voice has never sounded better.",
    "The lyrics are a bit silly but who cares.",
    "The musicianship is top notch.",
)
_VOCALS_NEG = (
    "The vocals are weak.",
    "The lyrics are pretty lame.",
    "The singing is off-key in places.",
    "The songwriting is lazy.",
    "Too much filler and not enough real songs.",
)
_QUALITY = (
    "The sound quality is excellent.",
    "The remaster is a huge improvement over the original CD.",
    "The mastering is way too compressed for my taste.",
    "Sounds great on my home stereo.",
    "I noticed some hiss on the older recordings.",
    "Great album to listen to with headphones.",
    "The recording quality is just average.",
    "This pressing sounds much better than my old copy.",
)
_SHIPPING = (
    "Arrived quickly and well packaged.",
    "Shipping took almost two weeks but it was worth the wait.",
    "The seller shipped it promptly.",
    "Got it two days after ordering.",
    "Fast shipping and a great price.",  # deliberate confounder: 'fast' is also a tempo word
    "It came sealed and in perfect condition.",
    "Delivery was on time, no complaints.",
)
_GIFT = (
    "I bought this as a gift for my {person} and {pron} loves it.",
    "Got this for my {person} for Christmas.",
    "My {person} has been playing it non-stop.",
    "Bought a second copy to give to my {person}.",
    "My {person} introduced me to {artist}.",
)
_PRICE = (
    "At this price you can't go wrong.",
    "Paid {price} dollars for it, a bargain.",
    "A little overpriced for a single disc.",
    "Worth every penny.",
    "I found it used for a couple of bucks.",
    "Not worth full price, wait for a sale.",
)
_CASE = (
    "The jewel case was cracked when it arrived, but the CD plays fine.",
    "The booklet has all the lyrics and some nice photos.",
    "The packaging is a flimsy cardboard sleeve.",
    "The disc had a scratch but Amazon replaced it right away.",
    "Nice liner notes with the history of each song.",
    "The artwork looks great on the digipak.",
)
_NOSTALGIA = (
    "I first heard this album back in {year} and it still holds up.",
    "This takes me back to the {decade}.",
    "I wore out my cassette copy years ago, so I had to get the CD.",
    "Brings back memories of high school.",
    "My parents played this when I was a kid.",
    "I had this on vinyl in {year} and finally replaced it.",
)
_ARTIST_POS = (
    "{artist} never disappoints.",
    "This is {artist} at the top of their game.",
    "{artist} has a voice like no other.",
    "I own every album by {artist} and this one ranks near the top.",
    "I saw {artist} live in {year} and this brings it all back.",
    "If you only own one record by {artist}, make it this one.",
    "{artist} took a risk with this one and it paid off.",
)
_ARTIST_NEG = (
    "{artist} sound nothing like they did in the early days.",
    "{artist} seems to be running out of ideas.",
    "I love {artist}, but this one misses the mark.",
    "{artist} has done much better.",
    "I saw {artist} live in {year} and they were far better than this.",
)
_CLOSE_POS = (
    "Highly recommended.",
    "Buy it, you won't regret it.",
    "Five stars.",
    "If you are a fan, this is a must-have.",
    "A must for any collection.",
    "Give it a listen.",
    "Can't recommend it enough.",
)
_CLOSE_NEG = ("Skip this one.", "Not recommended.", "Save your money.", "Two stars, and that is generous.")
_CLOSE_MID = ("Three stars, it's OK.", "Worth a listen if you are a fan.", "Decent, but not essential.")
# (positive pool, negative pool, weight): mixed (3-star) reviews draw from either pool.
_CHATTER: tuple[tuple[tuple[str, ...], tuple[str, ...], float], ...] = (
    (_TRACKS_POS, _TRACKS_NEG, 3.0),
    (_VOCALS_POS, _VOCALS_NEG, 2.0),
    (_QUALITY, _QUALITY, 1.5),
    (_SHIPPING, _SHIPPING, 1.0),
    (_GIFT, _GIFT, 0.8),
    (_PRICE, _PRICE, 0.8),
    (_CASE, _CASE, 0.7),
    (_NOSTALGIA, _NOSTALGIA, 1.0),
    (_ARTIST_POS, _ARTIST_NEG, 2.0),
)
_CHATTER_CUM_WEIGHTS = tuple(itertools.accumulate(w for _, _, w in _CHATTER))
_SUMMARY_POS = (
    "Great album", "A classic", "Five Stars", "Must have", "{artist} at their best", "Love it!", "Wonderful",
    "Amazing", "Worth it", "Excellent", "Still great after all these years", "{title}", "Fantastic CD",
)  # fmt: skip
_SUMMARY_NEG = ("Disappointed", "Not their best", "One Star", "Two Stars", "Meh", "Skip it", "Boring")
_SUMMARY_MID = ("Good but not great", "Three Stars", "OK", "Solid", "Some good songs", "It's alright")
_STYLE_SENTENCES = (
    "Great {w} album.",
    "If you like {w}, you need this.",
    "This is {w} at its finest.",
    "Classic {w} sound.",
    "Fans of {w} will love it.",
    "Some of the best {w} I have heard in years.",
    "Not much {w} in here, despite what the label says.",
)
_FEATURE_SENTENCES = ("I love the {w} on this one.", "Plenty of {w} throughout.", "Too much {w} for my taste.")
_MOOD_SENTENCES = (
    "The whole record has {a_w} feel.",
    "{song} is so {w}.",
    "Very {w} music.",
    "It puts me in {a_w} mood.",
    "The songs are {w} and heartfelt.",
)
_TEMPO_SENTENCES = ("Most of the songs are {w}.", "{song} is really {w}.", "The pace is {w} throughout.")
_TIMBRE_SENTENCES = (
    "The production is {w}.",
    "I love the {w} sound on this.",
    "The mix sounds {w}.",
    "{song} has {a_w} tone.",
)
_SUMMARY_FACTOR = ("Pure {w}", "{W} and wonderful", "So {w}", "{W} album")
_PERSONS = (("dad", "he"), ("mom", "she"), ("wife", "she"), ("husband", "he"), ("son", "he"), ("daughter", "she"))
_NON_ASCII = (
    "Très bien!",
    "Wunderschön, einfach großartig.",
    "¡Qué disco!",
    "Love it ❤️",
    "🎵🎵🎵",
    "最高のアルバムです。",
    "非常好听的专辑。",
    "A naïve charm throughout.",
    "Perfect for a lazy café afternoon.",
    "Über good.",
)
_HTML_SENTENCES = (
    "I first bought it at Barnes &amp; Noble.",
    "Great songs &amp; great lyrics.",
    "&quot;{song}&quot; is my favorite.",
    "It&#39;s a keeper.",
)
_NON_UTF8_MARK = "@@NONUTF8@@"  # replaced by a Latin-1 byte after serialisation
_NON_UTF8_BYTES = b"caf\xe9"  # 'café' in Latin-1: not valid UTF-8
_NAN_SENTINEL = 1.2345678901234567e300
_NAN_SENTINEL_JSON = orjson.dumps(_NAN_SENTINEL)
_NAN_TARGETS = ("spectral_rolloff", "zerocrossingrate")
_STATS = ("dmean", "dmean2", "dvar", "dvar2", "max", "mean", "median", "min", "var")
_ENTITIES = ("&amp;", "&quot;", "&#39;")
_MIN_REVIEW_TIME = 883612800  # 1998-01-01
_MAX_REVIEW_TIME = 1406073600  # 2014-07-23, end of the Amazon crawl


# --------------------------------------------------------------------------------------------------------------
# Quirk flags
# --------------------------------------------------------------------------------------------------------------


def normalize_quirks(quirks: bool | Iterable[str] | Mapping[str, bool]) -> frozenset[str]:
    """Turn the user's `quirks` (True/False, names, or {name: bool}) into the set of enabled quirk names.

    Why a set: each quirk is switchable on its own (e.g. keep the structural ones, drop the broken files) while
    `True` keeps the common case one word.
    """
    if isinstance(quirks, bool):
        return frozenset(QUIRKS) if quirks else frozenset()
    if isinstance(quirks, Mapping):
        names = {str(k) for k, v in quirks.items() if v}
        given = {str(k) for k in quirks}
    else:
        names = {str(k) for k in quirks}
        given = names
    unknown = sorted(given - set(QUIRKS))
    if unknown:
        raise ValueError(f"unknown quirk(s) {unknown}; known: {', '.join(QUIRKS)}")
    return frozenset(names)


# --------------------------------------------------------------------------------------------------------------
# Identifiers: pure functions of (seed, index) so workers need no shared state and ids never collide
# --------------------------------------------------------------------------------------------------------------

_B36 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_MULT = 0x9E3779B97F4A7C13  # coprime to 2, 3 and 5 → index ↦ id is a bijection modulo 36**k and 10**k


def _base36(x: int, width: int) -> str:
    """Fixed-width upper-case base-36 digits of x (x < 36**width)."""
    out = []
    for _ in range(width):
        x, r = divmod(x, 36)
        out.append(_B36[r])
    return "".join(reversed(out))


def amazon_id(seed: int, index: int) -> str:
    """The album's 10-char amazon-id: mostly ASIN-like ('B0' + 8 base-36), ~3% ISBN-like digits; unique."""
    if (index * 2_654_435_761 + seed * 97) % 100 < 3:
        return "0" + f"{(index * _MULT + seed * 7_919 + 13) % 10**9:09d}"
    return "B0" + _base36((index * _MULT + seed * 104_729 + 4_242) % 36**8, 8)


def _reviewer_id(seed: int, k: int) -> str:
    """Amazon-style reviewer id ('A' + 13 base-36), unique per reviewer index."""
    return "A" + _base36((k * _MULT + seed * 15_485_863 + 77) % 36**13, 13)


def _reviewer_name(seed: int, k: int) -> str | None:
    """A stable display name per reviewer (None → the key is absent, as for some real reviews)."""
    h = (k * 2_654_435_761 + seed * 40_503 + 11) % 2**32
    style = h % 20
    first, last = _FIRST[(h >> 5) % len(_FIRST)], _LAST[(h >> 11) % len(_LAST)]
    if style == 0:
        return None
    if style < 4:
        return f'{first} {last} "{first.lower()}{(h >> 17) % 100}"'
    if style < 7:
        return f"{first[0]}. {last}"
    if style == 7:
        return "Amazon Customer"
    if style == 8:
        return f"music lover {(h >> 17) % 1000}"
    return f"{first} {last}"


def _uuid(rng: np.random.Generator) -> str:
    """A random (version 4) canonical lowercase UUID from the album's generator."""
    b = bytearray(rng.bytes(16))
    b[6] = (b[6] & 0x0F) | 0x40
    b[8] = (b[8] & 0x3F) | 0x80
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


# --------------------------------------------------------------------------------------------------------------
# The plan: everything that needs a global view (categories, exact totals, guaranteed quirk slots)
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Plan:
    """Per-album, per-file and per-review decisions drawn once in the parent process from `seed`."""

    seed: int
    kind: np.ndarray  # int8 per album: 0 paired, 1 descriptor-only, 2 review-only
    n_reviews: np.ndarray  # int64 per album
    n_tracks: np.ndarray  # int64 per album (0 for review-only)
    artist: np.ndarray  # int64 per album
    broken_meta: np.ndarray  # bool per album
    file_cat: np.ndarray  # uint8 per descriptor file (code into _FILE_CATS)
    file_no_genre: np.ndarray  # bool per descriptor file
    review_cat: np.ndarray  # uint8 per review line (code into _REVIEW_CATS)
    review_dup: np.ndarray  # bool per review line: exact copy of the previous line
    review_off: np.ndarray  # int64 (albums + 1): first review line of each album
    file_off: np.ndarray  # int64 (albums + 1): first descriptor file of each album
    n_reviewers: int


def _category_counts(albums: int, proportions: str, enabled: frozenset[str]) -> tuple[int, int, int]:
    """(paired, descriptor-only, review-only) album counts for the chosen proportions."""
    if proportions == "real":
        desc_only = round(albums * (FULL_SCALE["descriptor_files"] - _REAL_PAIRED["albums"]) / FULL_SCALE["albums"])
        text_only = round(albums * (FULL_SCALE["albums"] - FULL_SCALE["descriptor_files"]) / FULL_SCALE["albums"])
        return albums - desc_only - text_only, desc_only, text_only
    desc_only = round(albums * _DEMO_SHARES[1]) if "descriptor_without_reviews" in enabled else 0
    text_only = round(albums * _DEMO_SHARES[2]) if "album_without_descriptor" in enabled else 0
    if albums >= 3:  # "at least one of each" for small demo runs
        desc_only = max(desc_only, int("descriptor_without_reviews" in enabled))
        text_only = max(text_only, int("album_without_descriptor" in enabled))
    return albums - desc_only - text_only, desc_only, text_only


def _allocate_reviews(rng: np.random.Generator, n: int, total: int) -> np.ndarray:
    """Split `total` reviews over `n` albums: each ≥ 1, heavy-tailed (lognormal shares), exact sum."""
    if n == 0:
        return np.zeros(0, np.int64)
    total = max(total, n)
    weights = rng.lognormal(0.0, 1.2, n)
    share = (total - n) * weights / weights.sum()
    counts = np.floor(share).astype(np.int64)
    remainder = int(total - n - counts.sum())
    if remainder > 0:
        counts[np.argsort(counts - share, kind="stable")[:remainder]] += 1
    return counts + 1


def _track_counts(rng: np.random.Generator, n: int, tracks_per_album: int) -> np.ndarray:
    """Descriptor files per album: 1 (MARD) or heavy-tailed 1..K (the 'augmented' layout), p(k) ∝ k^-0.8."""
    if tracks_per_album <= 1:
        return np.ones(n, np.int64)
    k = np.arange(1, tracks_per_album + 1)
    p = k**-0.8
    return rng.choice(k, size=n, p=p / p.sum()).astype(np.int64)


def _ensure_one(rng: np.random.Generator, cats: np.ndarray, code: int, eligible: np.ndarray) -> None:
    """Guarantee at least one unit carries quirk `code` (tests count every quirk even at 40 albums)."""
    if (cats == code).any():
        return
    candidates = np.flatnonzero(eligible & (cats == 0))
    if candidates.size:
        cats[candidates[rng.integers(candidates.size)]] = code


def _draw_categories(
    rng: np.random.Generator, n: int, names: tuple[str, ...], enabled: frozenset[str], eligible: np.ndarray
) -> np.ndarray:
    """Mutually exclusive quirk categories per unit at the configured rates, each enabled one ≥ 1 time."""
    rates = np.array([(_QUIRK_RATES[q] or 0.0) if q in enabled else 0.0 for q in names])
    u = rng.random(n)
    cats = np.searchsorted(np.cumsum(rates), u, side="right").astype(np.uint8) + 1
    cats[cats > len(names)] = 0
    cats[~eligible] = 0
    for code, name in enumerate(names, start=1):
        if name in enabled:
            _ensure_one(rng, cats, code, eligible)
    return cats


def _make_plan(albums: int, seed: int, tracks_per_album: int, enabled: frozenset[str], proportions: str) -> _Plan:
    """Draw the global plan: album categories (shuffled), exact review totals, files, and quirk slots."""
    rng = np.random.default_rng([seed, 1_000_003])
    n_paired, n_desc, n_text = _category_counts(albums, proportions, enabled)
    kind = rng.permutation(np.repeat(np.array([0, 1, 2], np.int8), [n_paired, n_desc, n_text]))
    n_reviews = np.zeros(albums, np.int64)  # at full scale the means give MARD's exact totals
    n_reviews[kind == 0] = _allocate_reviews(rng, n_paired, round(n_paired * _PAIRED_MEAN))
    n_reviews[kind == 2] = _allocate_reviews(rng, n_text, round(n_text * _TEXT_ONLY_MEAN))
    n_tracks = np.where(kind == 2, 0, _track_counts(rng, albums, tracks_per_album))
    n_artists = max(1, round(albums / 2.2))
    artist = np.floor(n_artists * rng.random(albums) ** 1.6).astype(np.int64)  # a few prolific artists

    broken_meta = np.zeros(albums, bool)
    if "broken_metadata" in enabled:
        broken_meta = rng.random(albums) < (_QUIRK_RATES["broken_metadata"] or 0.0)
        if not broken_meta.any() and albums:
            broken_meta[rng.integers(albums)] = True

    review_off = np.concatenate([[0], np.cumsum(n_reviews)])
    file_off = np.concatenate([[0], np.cumsum(n_tracks)])
    n_rev, n_files = int(review_off[-1]), int(file_off[-1])

    file_cat = _draw_categories(rng, n_files, _FILE_CATS, enabled, np.ones(n_files, bool))
    no_genre = np.zeros(n_files, bool)
    if "descriptor_without_genre" in enabled and n_files:
        no_genre = rng.random(n_files) < (_QUIRK_RATES["descriptor_without_genre"] or 0.0)
        readable = np.flatnonzero(file_cat != 1)
        if readable.size and not no_genre[readable].any():
            no_genre[readable[rng.integers(readable.size)]] = True

    first_line = np.zeros(n_rev, bool)
    first_line[review_off[:-1][n_reviews > 0]] = True
    review_dup = np.zeros(n_rev, bool)
    if "duplicate_review" in enabled and n_rev:
        review_dup = (rng.random(n_rev) < (_QUIRK_RATES["duplicate_review"] or 0.0)) & ~first_line
        later = np.flatnonzero(~first_line)
        if later.size and not review_dup.any():
            review_dup[later[rng.integers(later.size)]] = True
    # A duplicate copies its predecessor, so its own category would never show: keep categories off them.
    review_cat = _draw_categories(rng, n_rev, _REVIEW_CATS, enabled, ~review_dup)
    return _Plan(
        seed=seed,
        kind=kind,
        n_reviews=n_reviews,
        n_tracks=n_tracks,
        artist=artist,
        broken_meta=broken_meta,
        file_cat=file_cat,
        file_no_genre=no_genre,
        review_cat=review_cat,
        review_dup=review_dup,
        review_off=review_off,
        file_off=file_off,
        n_reviewers=max(20, int(n_rev / 2.5)),
    )


@dataclass(frozen=True)
class _Chunk:
    """A contiguous album range with its slice of the plan: the unit of work sent to a worker process."""

    seed: int
    start: int
    stop: int
    n_albums: int
    n_reviewers: int
    out_dir: str
    kind: np.ndarray
    n_reviews: np.ndarray
    n_tracks: np.ndarray
    artist: np.ndarray
    broken_meta: np.ndarray
    file_cat: np.ndarray
    file_no_genre: np.ndarray
    review_cat: np.ndarray
    review_dup: np.ndarray
    review_line0: int  # global 0-based line of the chunk's first review


def _chunks(plan: _Plan, out_dir: Path, size: int) -> Iterator[_Chunk]:
    """Slice the plan into album ranges (the boundaries never change the output)."""
    n = plan.kind.size
    for start in range(0, n, size):
        stop = min(n, start + size)
        r0, r1 = int(plan.review_off[start]), int(plan.review_off[stop])
        f0, f1 = int(plan.file_off[start]), int(plan.file_off[stop])
        yield _Chunk(
            seed=plan.seed,
            start=start,
            stop=stop,
            n_albums=n,
            n_reviewers=plan.n_reviewers,
            out_dir=str(out_dir),
            kind=plan.kind[start:stop],
            n_reviews=plan.n_reviews[start:stop],
            n_tracks=plan.n_tracks[start:stop],
            artist=plan.artist[start:stop],
            broken_meta=plan.broken_meta[start:stop],
            file_cat=plan.file_cat[f0:f1],
            file_no_genre=plan.file_no_genre[f0:f1],
            review_cat=plan.review_cat[r0:r1],
            review_dup=plan.review_dup[r0:r1],
            review_line0=r0,
        )


# --------------------------------------------------------------------------------------------------------------
# Albums: artist, names, latent factors
# --------------------------------------------------------------------------------------------------------------


@dataclass
class _Artist:
    """Shared by all of an artist's albums: the name (which reviews mention), a home genre, factor offsets."""

    name: str
    genre: int
    offset: np.ndarray  # factor offsets shared by all the artist's albums
    mbid: str
    url_id: str


@dataclass
class _Album:
    """Everything drawn for one album; `rng`/`text_rng` continue its private random streams."""

    index: int
    asin: str
    artist: _Artist
    genre: int
    factors: np.ndarray  # valence, arousal, bpm, brightness, distortion, acousticness
    title: str
    year: int
    songs: list[tuple[str, str]]  # (title, recording mbid)
    release_mbid: str
    release_group_mbid: str
    label: str
    track_length: float  # typical track length (s) of the album
    mapped: bool  # has MusicBrainz ids (always true when it has descriptors)
    rng: np.random.Generator
    text_rng: random.Random = field(repr=False, default_factory=random.Random)


def _artist_name(rng: np.random.Generator, genre: str) -> str:
    """A plausible artist name; a few styles are genre-flavoured (DJ, Lil, Quartet …) as on real shelves."""
    adj, noun, noun_pl = (
        _ADJ[rng.integers(len(_ADJ))],
        _NOUN[rng.integers(len(_NOUN))],
        _NOUN_PL[rng.integers(len(_NOUN_PL))],
    )
    first, last = _FIRST[rng.integers(len(_FIRST))], _LAST[rng.integers(len(_LAST))]
    style = rng.integers(10)
    if genre == "Dance & Electronic" and style < 4:
        return f"DJ {adj}"
    if genre == "Rap & Hip-Hop" and style < 4:
        return f"Lil {noun}" if style < 2 else f"MC {first}"
    if genre in ("Jazz", "Classical") and style < 5:
        band = ("Trio", "Quartet") if genre == "Jazz" else ("Ensemble", "Philharmonic")
        return f"{first} {last} {band[style % 2]}"
    if style < 3:
        return f"The {adj} {noun_pl}"
    if style < 6:
        return f"{first} {last}"
    if style < 8:
        return f"{adj} {noun}"
    return f"{noun_pl} of {_NOUN[rng.integers(len(_NOUN))]}"


def _album_title(rng: np.random.Generator) -> str:
    """Album titles from neutral word lists (never factor words: a title must not hint at the audio)."""
    adj, noun, noun2 = _ADJ[rng.integers(len(_ADJ))], _NOUN[rng.integers(len(_NOUN))], _NOUN[rng.integers(len(_NOUN))]
    style = rng.integers(8)
    if style == 0:
        return f"The {noun} of {noun2}"
    if style == 1:
        return _NOUN_PL[rng.integers(len(_NOUN_PL))]
    if style == 2:
        return f"Live at the {noun}"
    if style == 3:
        return f"{adj} {noun} (Remastered)"
    if style == 4:
        return f"Greatest Hits Vol. {rng.integers(1, 4)}"
    return f"{adj} {noun}"


def _track_title(rng: np.random.Generator) -> str:
    """Track titles, quoted by reviews ('My favorite song is …') and written to the descriptor tags."""
    adj, noun = _ADJ[rng.integers(len(_ADJ))], _NOUN[rng.integers(len(_NOUN))]
    style = rng.integers(6)
    if style == 0:
        return f"{_VERB_ING[rng.integers(len(_VERB_ING))]} {noun}"
    if style == 1:
        return f"The {noun}"
    if style == 2:
        return f"{noun} Song"
    if style == 3:
        return f"{_VERB_ING[rng.integers(len(_VERB_ING))]}"
    return f"{adj} {noun}"


@functools.lru_cache(maxsize=4096)
def _artist(seed: int, index: int) -> _Artist:
    """Artist attributes are a pure function of (seed, artist index): every worker sees the same artist."""
    rng = np.random.default_rng([seed, 1, index])
    genre = int(rng.choice(len(GENRES), p=_GENRE_WEIGHTS))
    return _Artist(
        name=_artist_name(rng, GENRES[genre]),
        genre=genre,
        offset=rng.normal(0.0, _ARTIST_SD),
        mbid=_uuid(rng),
        url_id="B000" + _base36(int(rng.integers(36**6)), 6),
    )


def _make_album(seed: int, index: int, artist_index: int, n_tracks: int, has_descriptor: bool) -> _Album:
    """Draw one album: genre (mostly its artist's), factors = prior + artist + album noise, names, songs."""
    rng = np.random.default_rng([seed, 0, index])
    artist = _artist(seed, artist_index)
    genre = artist.genre if rng.random() < 0.85 else int(rng.choice(len(GENRES), p=_GENRE_WEIGHTS))
    factors = _GENRE_PRIORS[genre] + artist.offset + rng.normal(0.0, _ALBUM_SD)
    factors = np.clip(factors, _FACTOR_LO, _FACTOR_HI)
    n_songs = max(n_tracks, int(rng.integers(6, 19)))
    songs = [(_track_title(rng), _uuid(rng)) for _ in range(n_songs)]
    typical = 420.0 if GENRES[genre] == "Classical" else 235.0
    return _Album(
        index=index,
        asin=amazon_id(seed, index),
        artist=artist,
        genre=genre,
        factors=factors,
        title=_album_title(rng),
        year=int(np.clip(round(rng.normal(1994, 12)), 1950, 2014)),
        songs=songs,
        release_mbid=_uuid(rng),
        release_group_mbid=_uuid(rng),
        label=_LABELS[rng.integers(len(_LABELS))],
        track_length=float(typical * rng.lognormal(0.0, 0.2)),
        mapped=has_descriptor or bool(rng.random() < 0.5),
        rng=rng,
        text_rng=random.Random(int(rng.integers(2**63))),
    )


# --------------------------------------------------------------------------------------------------------------
# Descriptor documents: the template's numeric leaves as one vector, perturbed in a few vectorised steps
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Slot:
    """A numeric leaf of the template: values [start, stop) of the flat vector, with its shape and int-ness."""

    start: int
    stop: int
    shape: tuple[int, ...]
    is_int: bool


_N_HIDDEN = 16
_BANDED = ("lowlevel.barkbands", "lowlevel.melbands", "lowlevel.erbbands")
_FROZEN_GROUPS = (
    "lowlevel.mfcc",
    "lowlevel.gfcc",
    "lowlevel.silence_rate_20dB",
    "lowlevel.silence_rate_30dB",
    "lowlevel.average_loudness",
    "rhythm.bpm",
    "rhythm.beats_count",
    "rhythm.onset_rate",
    "rhythm.danceability",
    "tonal.tuning_frequency",
    "tonal.chords_histogram",
)
_UNIT_BOUNDED = (
    "lowlevel.pitch_salience",
    "lowlevel.zerocrossingrate",
    "lowlevel.silence_rate_60dB",
    "rhythm.beats_loudness_band_ratio",
    "tonal.hpcp",
    "tonal.thpcp",
    "tonal.key_strength",
    "tonal.chords_strength",
    "tonal.chords_changes_rate",
    "tonal.chords_number_rate",
    "tonal.tuning_diatonic_strength",
    "tonal.tuning_nontempered_energy_ratio",
)


@dataclass(frozen=True)
class _Model:
    """The template flattened plus the fixed 'world' (random loadings) mapping factors to descriptor values."""

    template: dict[str, Any]
    skeleton: dict[str, Any]
    base: np.ndarray  # float64 template values
    slots: dict[str, _Slot]  # dotted path → slot
    group: np.ndarray  # group index per value
    groups: tuple[str, ...]
    kind: np.ndarray  # 0 location (mean/median/min/max/plain), 1 derivative means, 2 variances
    frozen: np.ndarray  # bool: value set by special code or kept
    tilt: np.ndarray  # spectral tilt per band value (banded groups), 0 elsewhere
    lo: np.ndarray
    hi: np.ndarray
    bounded: np.ndarray  # bool: location values of bounded descriptors, perturbed in logit space
    base_logit: np.ndarray  # logit(base / hi) where bounded
    order_idx: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # min, max, mean, median (aligned)
    w1: np.ndarray  # (_N_HIDDEN, 10) first layer
    b1: np.ndarray
    genre_embed: np.ndarray  # (len(GENRES), 4)
    a_loc: np.ndarray  # (n_values, _N_HIDDEN)
    a_spread: np.ndarray
    mfcc_mean_w: np.ndarray  # (2, 13, _N_HIDDEN): mfcc, gfcc
    mfcc_std_w: np.ndarray
    corr_basis: np.ndarray  # (2, 4, 13, 13): correlation 'textures' mixed by the hidden code


def _template_path() -> Path:
    return Path(str(resources.files("mte").joinpath("resources", "descriptor_template.json")))


def _flatten(node: Any, path: tuple[str, ...], values: list[float], slots: dict[str, _Slot]) -> Any:
    """Replace every numeric leaf by a _Slot (recording its values); keep strings; None for rebuilt leaves."""
    dotted = ".".join(path)
    if dotted in ("metadata", "rhythm.beats_position"):
        return None
    if isinstance(node, dict):
        return {k: _flatten(v, (*path, k), values, slots) for k, v in node.items()}
    if isinstance(node, bool | str):
        return node
    if isinstance(node, int | float | list):
        arr = np.asarray(node, dtype=np.float64)
        start = len(values)
        values.extend(arr.ravel().tolist())
        slot = _Slot(start, len(values), arr.shape, isinstance(node, int))
        slots[dotted] = slot
        return slot
    raise TypeError(f"unexpected template leaf at {dotted}: {type(node).__name__}")


@functools.lru_cache(maxsize=1)
def _model() -> _Model:
    """Load and flatten the template once per process and draw the fixed world parameters."""
    template = orjson.loads(_template_path().read_bytes())
    values: list[float] = []
    slots: dict[str, _Slot] = {}
    skeleton = _flatten(template, (), values, slots)
    base = np.array(values)
    n = base.size
    group_names: list[str] = []
    group = np.zeros(n, np.int64)
    kind = np.zeros(n, np.int64)
    tilt = np.zeros(n)
    lo, hi = np.full(n, -np.inf), np.full(n, np.inf)
    frozen = np.zeros(n, bool)
    order: dict[str, dict[str, _Slot]] = {}
    for dotted, slot in slots.items():
        parts = dotted.split(".")
        stat = parts[-1] if parts[-1] in _STATS else None
        gname = ".".join(parts[:-1]) if stat else dotted
        if gname not in group_names:
            group_names.append(gname)
        sl = slice(slot.start, slot.stop)
        group[sl] = group_names.index(gname)
        kind[sl] = 2 if stat in ("var", "dvar", "dvar2") else 1 if stat in ("dmean", "dmean2") else 0
        frozen[sl] = gname in _FROZEN_GROUPS or gname.startswith("rhythm.bpm_histogram")
        if gname in _BANDED:
            width = slot.stop - slot.start
            tilt[sl] = np.arange(width) / max(1, width - 1) - 0.5
        if gname in _UNIT_BOUNDED and kind[slot.start] == 0:
            lo[sl], hi[sl] = 0.0, 1.0
        if gname == "lowlevel.dissonance" and kind[slot.start] == 0:
            lo[sl], hi[sl] = 0.0, 0.5
        if stat in ("min", "max", "mean", "median") and not frozen[slot.start]:
            order.setdefault(gname, {})[stat] = slot
    bounded = np.isfinite(hi) & (base > 0.0)
    frac = np.clip(np.where(bounded, base / np.where(np.isfinite(hi), hi, 1.0), 0.5), 1e-4, 1.0 - 1e-4)
    base_logit = np.where(bounded, np.log(frac / (1.0 - frac)), 0.0)
    order_idx = tuple(
        np.concatenate([np.arange(s[k].start, s[k].stop) for s in order.values() if len(s) == 4])
        for k in ("min", "max", "mean", "median")
    )
    world = np.random.default_rng(_WORLD_SEED)
    n_groups = len(group_names)
    g_loc = world.normal(0.0, 0.08, (n_groups, _N_HIDDEN))
    g_spread = world.normal(0.0, 0.05, (n_groups, _N_HIDDEN))
    a_loc = g_loc[group] + world.normal(0.0, 0.04, (n, _N_HIDDEN))
    a_spread = g_spread[group] + world.normal(0.0, 0.02, (n, _N_HIDDEN))
    a_loc[frozen] = 0.0
    a_spread[frozen] = 0.0
    corr_basis = np.stack([[_random_corr(world) for _ in range(4)] for _ in range(2)])
    return _Model(
        template=template,
        skeleton=skeleton,
        base=base,
        slots=slots,
        group=group,
        groups=tuple(group_names),
        kind=kind,
        frozen=frozen,
        tilt=tilt,
        lo=lo,
        hi=hi,
        bounded=bounded,
        base_logit=base_logit,
        order_idx=order_idx,  # type: ignore[arg-type]
        w1=world.normal(0.0, 1.5 / math.sqrt(10), (_N_HIDDEN, 10)),
        b1=world.normal(0.0, 0.5, _N_HIDDEN),
        genre_embed=world.normal(0.0, 1.0, (len(GENRES), 4)),
        a_loc=a_loc,
        a_spread=a_spread,
        mfcc_mean_w=world.normal(0.0, 1.0 / math.sqrt(_N_HIDDEN), (2, 13, _N_HIDDEN)),
        mfcc_std_w=world.normal(0.0, 1.0 / math.sqrt(_N_HIDDEN), (2, 13, _N_HIDDEN)),
        corr_basis=corr_basis,
    )


def _random_corr(rng: np.random.Generator, dim: int = 13, rank: int = 4) -> np.ndarray:
    """A random correlation matrix (low-rank + identity, unit diagonal): one MFCC 'texture'."""
    f = rng.normal(0.0, 1.0, (dim, rank))
    c = (f[:, None, :] * f[None, :, :]).sum(-1) + np.eye(dim)
    d = 1.0 / np.sqrt(np.diag(c))
    return c * d[:, None] * d[None, :]


def _matvec(m: np.ndarray, v: np.ndarray) -> np.ndarray:
    """m @ v without BLAS: numpy's own summation is the same in every process, so bytes stay identical."""
    return (m * v).sum(-1)


def _spd_inverse(a: np.ndarray) -> np.ndarray:
    """Gauss-Jordan inverse of a small SPD matrix (no pivoting needed: SPD pivots stay positive).

    Why not np.linalg.inv: LAPACK via OpenBLAS starts its own threads in every worker process; on a 2-core
    machine they fight the workers (measured: 2 workers slower than 1). This loop is 13 numpy steps.
    """
    n = a.shape[0]
    m = np.concatenate([a, np.eye(n)], axis=1)
    for k in range(n):
        m[k] /= m[k, k]
        col = m[:, k].copy()
        col[k] = 0.0
        m -= col[:, None] * m[k][None, :]
    return m[:, n:]


def _hidden(model: _Model, f: np.ndarray, genre: int) -> np.ndarray:
    """The non-linear code of a track's factors: tanh(W1·z + b1), z = scaled factors ⊕ genre embedding."""
    z = np.concatenate(
        [[f[0], f[1], (f[2] - 110.0) / 35.0, f[3], 2.0 * f[4] - 1.0, 2.0 * f[5] - 1.0], 0.35 * model.genre_embed[genre]]
    )
    return np.tanh(_matvec(model.w1, z) + model.b1)


def _hand_shifts(model: _Model, f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hand-made (log-scale) location/spread shifts: the physically meaningful part of the mapping."""
    v, a, bpm, b, d, c = f
    t = (bpm - 110.0) / 35.0
    bright = 0.5 * b + 0.35 * d * d - 0.3 * c + 0.15 * math.tanh(2.0 * a)
    energy = 0.4 * a + 0.3 * d
    shifts = {
        "lowlevel.spectral_centroid": (bright, 0.1 * a),
        "lowlevel.spectral_rolloff": (1.2 * bright, 0.15 * a + 0.1 * d),
        "lowlevel.zerocrossingrate": (0.4 * b + 0.5 * d - 0.25 * c + 0.2 * b * d, 0.1 * a),
        "lowlevel.dissonance": (1.2 * d - 0.5 * c + 0.2 * a - 0.3, 0.1 * d),  # logit units
        "lowlevel.hfc": (0.6 * b + 0.4 * d, 0.2 * a),
        "lowlevel.spectral_flux": (0.3 * a + 0.1 * t, 0.2 * a),
        "lowlevel.spectral_complexity": (0.3 * d + 0.2 * (1.0 - c), 0.0),
        "lowlevel.spectral_energy": (energy, 0.2 * a),
        "lowlevel.spectral_rms": (energy / 2.0, 0.1 * a),
        "lowlevel.pitch_salience": (0.2 * c - 0.2 * d, 0.0),
        "lowlevel.spectral_strongpeak": (0.3 * c - 0.3 * d, 0.0),
        "lowlevel.spectral_spread": (0.5 * b * (1.0 + d), 0.0),
        "lowlevel.barkbands_flatness_db": (0.4 * d, 0.0),
        "lowlevel.melbands_flatness_db": (0.4 * d, 0.0),
        "lowlevel.erbbands_flatness_db": (0.4 * d, 0.0),
        "lowlevel.dynamic_complexity": (0.6 * c - 0.5 * d - 0.2 * a, 0.0),
        "rhythm.beats_loudness": (energy, 0.2 * a),
        "tonal.hpcp_entropy": (0.3 * d - 0.2 * c, 0.0),
        "tonal.key_strength": (0.15 * c - 0.1 * d + 0.05 * v, 0.0),
    }
    loc, spread = np.zeros(len(model.groups)), np.zeros(len(model.groups))
    for name, (dl, ds) in shifts.items():
        gi = model.groups.index(name)
        loc[gi], spread[gi] = dl, ds
    return loc, spread


def _generic_values(model: _Model, f: np.ndarray, h: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """All non-special numeric leaves in one vectorised step: base · exp(stat-weighted loc/spread + noise)."""
    hand_loc, hand_spread = _hand_shifts(model, f)
    loc = _matvec(model.a_loc, h) + hand_loc[model.group] + (1.5 * f[3] + 0.5 * f[4]) * model.tilt
    spread = _matvec(model.a_spread, h) + hand_spread[model.group]
    weight_loc = np.array([1.0, 1.0, 2.0])[model.kind]
    weight_spread = np.array([0.0, 1.0, 2.0])[model.kind]
    noise = rng.normal(0.0, 1.0, model.base.size) * np.array([0.03, 0.05, 0.08])[model.kind]
    log_mult = weight_loc * loc + weight_spread * spread + noise
    log_mult[model.frozen] = 0.0
    vals = model.base * np.exp(log_mult)
    b = model.bounded  # a ratio near its bound must not saturate: shift it in logit space instead
    vals[b] = model.hi[b] / (1.0 + np.exp(-(model.base_logit[b] + log_mult[b])))
    vals = np.clip(vals, model.lo, model.hi)
    i_min, i_max, i_mean, i_med = model.order_idx
    centre = np.stack([vals[i_mean], vals[i_med]])
    vals[i_min] = np.minimum(vals[i_min], centre.min(0))
    vals[i_max] = np.maximum(vals[i_max], centre.max(0))
    return vals


def _cepstrum(
    model: _Model, which: int, name: str, f: np.ndarray, h: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MFCC/GFCC mean, SPD cov and its inverse: std and correlation both move with the factors and genre.

    cov = S·corr·S with corr a convex mix of the template's correlation and 'textures' weighted by the hidden
    code (so the factors, not the genre label, shape it), plus a per-track PSD term, renormalised to unit
    diagonal — SPD by construction, so icov always exists. An earlier genre-specific correlation made genre
    ~97% separable from the covariance alone: far easier than real audio, so it went.
    """
    t = model.template["lowlevel"][name]
    mean0, cov0 = np.array(t["mean"]), np.array(t["cov"])
    _v, a, _bpm, b, d, c = f
    mean = mean0 + 8.0 * _matvec(model.mfcc_mean_w[which], h) + rng.normal(0.0, 2.0, 13)
    mean[0] += 90.0 * (0.5 * a + 0.6 * d - 0.4 * c) + rng.normal(0.0, 15.0)
    mean[1] += -40.0 * b + 20.0 * c
    std0 = np.sqrt(np.diag(cov0))
    corr0 = cov0 / std0[:, None] / std0[None, :]
    log_std = np.log(std0) + 0.25 * _matvec(model.mfcc_std_w[which], h) + rng.normal(0.0, 0.04, 13)
    log_std[0] += 0.3 * a + 0.2 * d - 0.2 * c
    e = rng.normal(0.0, 0.25, (13, 3))
    mix = np.exp(2.0 * h[4 * which : 4 * which + 4])
    texture = (model.corr_basis[which] * (mix / mix.sum())[:, None, None]).sum(0)
    corr = 0.8 * corr0 + 0.2 * texture + (e[:, None, :] * e[None, :, :]).sum(-1)
    dn = 1.0 / np.sqrt(np.diag(corr))
    corr = corr * dn[:, None] * dn[None, :]
    s = np.exp(log_std)
    cov = (corr * s[:, None] * s[None, :]).astype(np.float32).astype(np.float64)
    cov = (cov + cov.T) / 2.0
    icov = _spd_inverse(cov)
    icov = (icov + icov.T) / 2.0
    return mean, cov, icov


@dataclass
class _TrackInfo:
    """What the descriptor document needs to know about its track besides the factors."""

    album: _Album
    song_no: int  # 0-based position in album.songs
    mbid: str
    genre_tag: bool
    asin_tag: bool


def _track_factors(album: _Album, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """The track's factors (album's + per-track noise) and its measured bpm (with octave errors, like Essentia)."""
    f = np.clip(album.factors + rng.normal(0.0, _TRACK_SD), _FACTOR_LO, _FACTOR_HI)
    bpm = float(f[2])
    if rng.random() < 0.04:
        bpm = float(np.clip(bpm * (2.0 if bpm < 100 else 0.5), 40.0, 250.0))
    return f, bpm


def _special_values(
    model: _Model,
    vals: np.ndarray,
    f: np.ndarray,
    h: np.ndarray,
    bpm: float,
    length: float,
    rng: np.random.Generator,
) -> tuple[float, int, np.ndarray]:
    """Set the leaves the generic step leaves alone (loudness, rhythm, tuning, chords, MFCC/GFCC).

    Returns (average loudness, key index, beat positions) for the parts of the document built afterwards.
    """
    slot = model.slots
    _v, a, _, _b, d, c = f
    loudness = 1.0 / (1.0 + math.exp(-(1.2 * a + 2.0 * d - 1.0 * c + 0.5 + rng.normal(0.0, 0.2))))
    vals[slot["lowlevel.average_loudness"].start] = loudness
    vals[slot["rhythm.bpm"].start] = bpm
    vals[slot["rhythm.onset_rate"].start] = bpm / 60.0 * (1.2 + 0.8 / (1.0 + math.exp(-(2 * a + d))))
    groove = 1.5 * a + 2.0 * math.exp(-(((bpm - 122.0) / 25.0) ** 2)) - 1.0 - c
    vals[slot["rhythm.danceability"].start] = 0.7 + 0.8 / (1.0 + math.exp(-groove)) + rng.normal(0.0, 0.05)
    vals[slot["tonal.tuning_frequency"].start] = float(np.clip(440.0 + rng.normal(0.0, 2.5), 430.0, 450.0))
    for which, name in enumerate(("mfcc", "gfcc")):
        for stat, arr in zip(("mean", "cov", "icov"), _cepstrum(model, which, name, f, h, rng), strict=True):
            s = slot[f"lowlevel.{name}.{stat}"]
            vals[s.start : s.stop] = arr.ravel()
    key = int(rng.integers(12))
    s = slot["tonal.chords_histogram"]
    vals[s.start : s.stop] = 100.0 * rng.dirichlet(np.where(np.arange(24) % 12 == key, 8.0, 0.4))
    beats = np.cumsum(np.full(int(length * bpm / 60.0 * rng.uniform(0.96, 1.0)), 60.0 / bpm))
    beats = (beats + rng.uniform(0.05, 0.5) + rng.normal(0.0, 0.004, beats.size)).astype(np.float32)
    vals[slot["rhythm.beats_count"].start] = beats.size
    _bpm_histogram(vals, slot, bpm, rng)
    return loudness, key, beats


def _descriptor_doc(track: _TrackInfo, rng: np.random.Generator) -> dict[str, Any]:
    """Build one AcousticBrainz low-level document for a track of `track.album`."""
    model = _model()
    album = track.album
    f, bpm = _track_factors(album, rng)
    h = _hidden(model, f, album.genre)
    vals = _generic_values(model, f, h, rng)
    length = float(np.clip(album.track_length * rng.lognormal(0.0, 0.25), 30.0, 1800.0))
    loudness, key, beats = _special_values(model, vals, f, h, bpm, length, rng)
    doc = _rebuild(model.skeleton, vals, vals.astype(np.float32))
    doc["rhythm"]["beats_position"] = beats
    major = rng.random() < 1.0 / (1.0 + math.exp(-2.5 * f[0]))  # happier albums are more often in major
    scale = "major" if major else "minor"
    same = rng.random() < 0.7
    doc["tonal"]["key_key"] = _CHORD_KEYS[key]
    doc["tonal"]["key_scale"] = scale
    doc["tonal"]["chords_key"] = _CHORD_KEYS[key if same else int(rng.integers(12))]
    doc["tonal"]["chords_scale"] = scale if same else ("minor" if major else "major")
    doc["metadata"] = _doc_metadata(track, length, loudness, rng)
    return doc


def _bpm_histogram(vals: np.ndarray, slot: dict[str, _Slot], bpm: float, rng: np.random.Generator) -> None:
    """The six bpm_histogram_* 'stats' groups hold one constant value each (derivatives/variances are 0)."""
    second = bpm * float(rng.choice([0.5, 2.0 / 3.0, 1.5, 2.0, 1.02]))
    peaks = {
        "first_peak_bpm": float(round(bpm)),
        "first_peak_spread": float(rng.uniform(0.0, 0.6)),
        "first_peak_weight": float(rng.uniform(0.2, 0.95)),
        "second_peak_bpm": float(round(second)),
        "second_peak_spread": float(rng.uniform(0.0, 0.6)),
        "second_peak_weight": float(rng.uniform(0.0, 0.3)),
    }
    for name, value in peaks.items():
        for stat in _STATS:
            vals[slot[f"rhythm.bpm_histogram_{name}.{stat}"].start] = value if stat[0] == "m" else 0.0


def _rebuild(node: Any, vals: np.ndarray, vals32: np.ndarray) -> Any:
    """Skeleton → document: ints stay ints (as Essentia prints them), other numbers become float32."""
    if isinstance(node, _Slot):
        if node.shape == ():
            return round(float(vals[node.start])) if node.is_int else vals32[node.start]
        return vals32[node.start : node.stop].reshape(node.shape)
    if isinstance(node, dict):
        return {k: _rebuild(v, vals, vals32) for k, v in node.items()}
    return node


def _doc_metadata(track: _TrackInfo, length: float, loudness: float, rng: np.random.Generator) -> dict:
    """metadata.{audio_properties, tags, version} shaped like real AcousticBrainz submissions."""
    album = track.album
    lossless = bool(rng.random() < 0.3)
    codec = "flac" if lossless else str(rng.choice(["mp3", "mp3", "vorbis", "aac"]))
    song_title = album.songs[track.song_no][0]
    tags: dict[str, Any] = {
        "album": [album.title],
        "albumartist": [album.artist.name],
        "artist": [album.artist.name],
        "date": [str(album.year)],
        "file_name": f"{track.song_no + 1:02d}_{song_title.lower().replace(' ', '_')}.{codec}",
        "musicbrainz_albumartistid": [album.artist.mbid],
        "musicbrainz_albumid": [album.release_mbid],
        "musicbrainz_artistid": [album.artist.mbid],
        "musicbrainz_recordingid": [track.mbid],
        "musicbrainz_releasegroupid": [album.release_group_mbid],
        "title": [song_title],
        "tracknumber": [f"{track.song_no + 1:02d}" if rng.random() < 0.5 else str(track.song_no + 1)],
        "tracktotal": [str(len(album.songs))],
    }
    if rng.random() < 0.5:
        tags["label"] = [album.label]
        tags["media"] = ["CD"]
    if track.asin_tag:
        tags["asin"] = [album.asin]
    if track.genre_tag:
        options = _GENRE_TAGS[GENRES[album.genre]]
        other = GENRES[int(rng.integers(len(GENRES)))]
        tag_genre = options[int(rng.integers(len(options)))] if rng.random() < 0.9 else _GENRE_TAGS[other][0]
        tags["genre"] = [tag_genre]
    return {
        "audio_properties": {
            "analysis_sample_rate": 44100,
            "bit_rate": 0 if lossless else int(rng.choice([128000, 192000, 256000, 320000])),
            "codec": codec,
            "downmix": "mix",
            "equal_loudness": 0,
            "length": np.float32(length),
            "lossless": lossless,
            "md5_encoded": rng.bytes(16).hex(),
            "replay_gain": np.float32(-(14.0 * loudness - 3.0) + rng.normal(0.0, 1.0)),
            "sample_rate": 44100,
        },
        "tags": dict(sorted(tags.items())),
        "version": {
            "essentia": "2.1-beta2",
            "essentia_build_sha": _ESSENTIA_BUILDS[int(rng.integers(len(_ESSENTIA_BUILDS)))],
            "essentia_git_sha": "v2.1_beta2",
            "extractor": "music 1.0",
        },
    }


def _serialize_doc(doc: dict[str, Any], quirk: str | None, rng: np.random.Generator) -> tuple[bytes, str]:
    """Serialise a document (2-space indent like the real files), applying a file-level quirk if any."""
    detail = ""
    if quirk == "missing_mfcc":
        del doc["lowlevel"]["mfcc"]
    elif quirk == "nan_value":
        name = _NAN_TARGETS[int(rng.integers(len(_NAN_TARGETS)))]
        stat = _STATS[int(rng.integers(len(_STATS)))]
        doc["lowlevel"][name][stat] = _NAN_SENTINEL
        detail = f"lowlevel.{name}.{stat}"
    data = orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY)
    if quirk == "nan_value":
        data = data.replace(_NAN_SENTINEL_JSON, b"NaN")  # Python's json writes NaN; Essentia output has it too
    elif quirk == "broken_descriptor":
        cut = int(len(data) * rng.uniform(0.1, 0.9))
        detail = f"truncated at byte {cut} of {len(data)}"
        data = data[:cut]
    return data + (b"" if quirk == "broken_descriptor" else b"\n"), detail


def _descriptor_name(asin: str, mbid: str, bad: bool, rng: np.random.Generator) -> str:
    """`<amazon-id>_<mbid>.json`, or (quirk) a near miss of that pattern that a strict parser must reject."""
    if not bad:
        return f"{asin}_{mbid}.json"
    variant = int(rng.integers(3))
    if variant == 0:
        return f"{asin}_{mbid.replace('-', '')}.json"
    if variant == 1:
        return f"{asin}-{mbid}.json"
    return f"{asin[:9]}_{mbid}.json"


# --------------------------------------------------------------------------------------------------------------
# Metadata lines
# --------------------------------------------------------------------------------------------------------------


def _metadata_record(album: _Album, n_albums: int, seed: int) -> dict[str, Any]:
    """One mard_metadata.json record; optional keys go missing at realistic rates."""
    rng, genre = album.rng, GENRES[album.genre]
    rec: dict[str, Any] = {"amazon-id": album.asin, "artist": album.artist.name, "title": album.title}
    if rng.random() < 0.85:
        rec["related"] = {
            k: list(dict.fromkeys(amazon_id(seed, int(j)) for j in rng.integers(n_albums, size=rng.integers(1, 8))))
            for k in ("also_bought", "also_viewed", "bought_together")
            if rng.random() < 0.7
        }
    if rng.random() < 0.8:
        rec["price"] = round(float(rng.uniform(4.0, 25.0)), 2)
    if rng.random() < 0.6:
        rec["label"] = album.label
    if rng.random() < 0.95:
        sub = _SUBGENRES[genre][int(rng.integers(len(_SUBGENRES[genre])))]
        rec["categories"] = [["CDs & Vinyl", genre], ["CDs & Vinyl", genre, sub]]
    if rng.random() < 0.9:
        rec["salesRank"] = {"Music": int(rng.lognormal(11.0, 1.5))}
    if rng.random() < 0.98:
        rec["imUrl"] = f"http://ecx.images-amazon.com/images/I/51{_base36(int(rng.integers(36**8)), 8)}L.jpg"
    if rng.random() < 0.7:
        slug = album.artist.name.replace(" ", "-").replace('"', "")
        rec["artist_url"] = f"http://www.amazon.com/{slug}/e/{album.artist.url_id}"
    if rng.random() < 0.97:
        rec["root-genre"] = genre
    if album.mapped:
        rec["artist-mbid"] = album.artist.mbid
        rec["first-release-year"] = album.year
        rec["release-group-mbid"] = album.release_group_mbid
        rec["release-mbid"] = album.release_mbid
        if rng.random() < 0.97:
            rec["songs"] = [{"title": t, "mbid": m} for t, m in album.songs]
    return rec


# --------------------------------------------------------------------------------------------------------------
# Reviews
# --------------------------------------------------------------------------------------------------------------


def _rating(rnd: random.Random) -> float:
    """Amazon's J-shaped star distribution."""
    return float(rnd.choices((1, 2, 3, 4, 5), cum_weights=(6, 11, 20, 40, 100))[0])


def _article(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


def _factor_sentences(rnd: random.Random, album: _Album, slots: dict[str, str]) -> tuple[list[str], list[str]]:
    """The few sentences that carry the album's latent factors — noisy, sometimes contradicting.

    Why so weak: a model must *learn* the factors from many reviews; a review naming its genre every time would
    make retrieval trivial and unlike real data. Returns (sentences, the factor words used).
    """
    out: list[str] = []
    words: list[str] = []
    v, a, bpm, b, d, c = album.factors

    def say(templates: tuple[str, ...], word: str) -> None:
        words.append(word)
        out.append(rnd.choice(templates).format(w=word, a_w=_article(word), **slots))

    if rnd.random() < 0.5:
        genre = GENRES[album.genre if rnd.random() < 0.82 else rnd.randrange(len(GENRES))]
        if rnd.random() < 0.65:
            say(_STYLE_SENTENCES, rnd.choice(_GENRE_STYLES[genre]))
        else:
            say(_FEATURE_SENTENCES, rnd.choice(_GENRE_FEATURES[genre]))
    polar = (
        ("valence", v, 0.35, 0.4, _MOOD_SENTENCES),
        ("arousal", a, 0.35, 0.4, _MOOD_SENTENCES),
        ("bpm", (bpm - 110.0) / 30.0, 0.25, 0.5, _TEMPO_SENTENCES),
    )
    for name, value, p, noise, templates in polar:
        if rnd.random() < p:
            positive = value + rnd.gauss(0.0, noise) > 0.0
            say(templates, rnd.choice(_POLE_WORDS[name][0 if positive else 1]))
    if rnd.random() < 0.4:
        timbre = {"brightness": b, "distortion": 2.0 * d - 1.0, "acousticness": 2.0 * c - 1.0}
        names = list(timbre)
        name = rnd.choices(names, weights=[abs(timbre[k]) + 0.2 for k in names])[0]
        positive = timbre[name] + rnd.gauss(0.0, 0.4) > 0.0
        say(_TIMBRE_SENTENCES, rnd.choice(_POLE_WORDS[name][0 if positive else 1]))
    return out, words


def _summary(rnd: random.Random, rating: float, album: _Album, factor_words: list[str]) -> str:
    if factor_words and rnd.random() < 0.15:
        w = rnd.choice(factor_words)
        return rnd.choice(_SUMMARY_FACTOR).format(w=w, W=w.capitalize())
    pool = _SUMMARY_POS if rating >= 4 else _SUMMARY_NEG if rating <= 2 else _SUMMARY_MID
    return rnd.choice(pool).format(artist=album.artist.name, title=album.title)


def _chatter(rnd: random.Random, rating: float, n: int, slots: dict[str, str]) -> list[str]:
    """n chatter sentences whose sentiment follows the rating, without repeats (unless the pools run dry)."""
    used: set[str] = set()
    out = []
    for _ in range(n):
        pos, neg, _w = rnd.choices(_CHATTER, cum_weights=_CHATTER_CUM_WEIGHTS)[0]
        pool = pos if rating >= 4 else neg if rating <= 2 else rnd.choice((pos, neg))
        template = rnd.choice(pool)
        for _retry in range(3):
            if template not in used:
                break
            template = rnd.choice(pool)
        used.add(template)
        out.append(template.format(**slots))
    return out


def _review_text(rnd: random.Random, album: _Album, rating: float, long: bool) -> tuple[str, str]:
    """(summary, reviewText): an opener, chatter, factor sentences and a closer, shuffled and joined."""
    songs = [t for t, _ in album.songs]
    person, pron = rnd.choice(_PERSONS)
    picks = rnd.sample(range(len(songs)), k=min(3, len(songs)))
    slots = {
        "artist": album.artist.name,
        "title": album.title,
        "song": songs[picks[0]],
        "song2": songs[picks[min(1, len(picks) - 1)]],
        "song3": songs[picks[-1]],
        "n": str(picks[0] + 1),
        "year": str(max(album.year, 1960) + rnd.randrange(0, 6)),
        "decade": f"{(album.year // 10) * 10 % 100:02d}s" if album.year < 2000 else "2000s",
        "person": person,
        "pron": pron,
        "price": f"{rnd.uniform(3, 20):.2f}",
    }
    factor, factor_words = _factor_sentences(rnd, album, slots)
    n_chatter = 120 + rnd.randrange(60) if long else min(40, max(1, int(rnd.lognormvariate(1.9, 0.75))))
    sentences = _chatter(rnd, rating, n_chatter, slots) + factor
    rnd.shuffle(sentences)
    positive, negative = rating >= 4, rating <= 2
    if rnd.random() < 0.6:
        opener = _OPEN_POS if positive else _OPEN_NEG if negative else _OPEN_MID
        sentences.insert(0, rnd.choice(opener).format(**slots))
    if rnd.random() < 0.5:
        sentences.append(rnd.choice(_CLOSE_POS if positive else _CLOSE_NEG if negative else _CLOSE_MID))
    if long:  # a rant: always past the 'very long' threshold
        while sum(map(len, sentences)) + len(sentences) <= 5200:
            sentences.extend(_chatter(rnd, rating, 10, slots))
    else:  # natural reviews stay well under it
        while len(sentences) > 1 and sum(map(len, sentences)) > 3500:
            sentences.pop(rnd.randrange(len(sentences)))
    return _summary(rnd, rating, album, factor_words), " ".join(sentences)


def _apply_text_quirk(rnd: random.Random, quirk: str | None, summary: str, text: str, song: str) -> tuple:
    """Inject a per-review text quirk (empty text, HTML entities, non-ASCII, a non-UTF-8 marker)."""
    if quirk == "empty_review":
        return summary, ""
    if quirk == "html_entities":
        text = text.replace("'", "&#39;").replace('"', "&quot;")
        extra = rnd.choice(_HTML_SENTENCES).replace("{song}", song)
        return summary, f"{text} {extra}"
    if quirk == "non_ascii":
        extra = rnd.choice(_NON_ASCII)
        if rnd.random() < 0.3:
            text = text.replace("'", "\u2019")
        return (f"{summary} {extra}", text) if rnd.random() < 0.2 else (summary, f"{text} {extra}")
    if quirk == "non_utf8_review":
        return summary, f"{text} Listened to it in a {_NON_UTF8_MARK} yesterday."
    return summary, text


def _review_lines(album: _Album, chunk: _Chunk, local: int, r0: int) -> tuple[list[bytes], dict[str, Any]]:
    """All review lines of one album (as bytes) and the per-line quirk facts observed on the final bytes."""
    rnd = album.text_rng
    n = int(chunk.n_reviews[local])
    lines: list[bytes] = []
    facts: dict[str, list[int]] = {q: [] for q in ("duplicate_review", *_REVIEW_CATS)}
    song = album.songs[0][0]
    t_lo = max(_MIN_REVIEW_TIME, int(datetime(album.year, 6, 1, tzinfo=timezone.utc).timestamp()))
    for j in range(n):
        line_no = chunk.review_line0 + r0 + j + 1
        if chunk.review_dup[r0 + j] and lines:
            lines.append(lines[-1])
            facts["duplicate_review"].append(line_no)
            _observe(lines[-1], facts, line_no)
            continue
        code = int(chunk.review_cat[r0 + j])
        quirk = _REVIEW_CATS[code - 1] if code else None
        rating = _rating(rnd)
        summary, text = _review_text(rnd, album, rating, long=quirk == "long_review")
        summary, text = _apply_text_quirk(rnd, quirk, summary, text, song)
        k = int(chunk.n_reviewers * rnd.random() ** 2)
        unix = rnd.randrange(min(t_lo, _MAX_REVIEW_TIME - 86400), _MAX_REVIEW_TIME)
        day = datetime.fromtimestamp(unix, tz=timezone.utc)
        total_votes = int(rnd.expovariate(0.3)) if rnd.random() < 0.6 else 0
        rec: dict[str, Any] = {"reviewerID": _reviewer_id(chunk.seed, k), "amazon-id": album.asin}
        name = _reviewer_name(chunk.seed, k)
        if name is not None:
            rec["reviewerName"] = name
        rec.update(
            helpful=[rnd.randint(0, total_votes), total_votes],
            reviewText=text,
            overall=rating,
            summary=summary,
            unixReviewTime=unix,
            reviewTime=f"{day.month:02d} {day.day}, {day.year}",
        )
        line = orjson.dumps(rec)
        if quirk == "non_utf8_review":
            line = line.replace(_NON_UTF8_MARK.encode(), _NON_UTF8_BYTES)
        lines.append(line + b"\n")
        _observe(lines[-1], facts, line_no)
    return lines, facts


def _observe(line: bytes, facts: dict[str, list[int]], line_no: int) -> None:
    """Record which text quirks a final review line actually shows (what a reader of the file would see)."""
    try:
        rec = orjson.loads(line)
    except orjson.JSONDecodeError:  # invalid UTF-8 makes orjson refuse the whole line
        facts["non_utf8_review"].append(line_no)
        return
    text, summary = rec["reviewText"], rec["summary"]
    if text == "":
        facts["empty_review"].append(line_no)
    if len(text) > 5000:
        facts["long_review"].append(line_no)
    if any(e in text or e in summary for e in _ENTITIES):
        facts["html_entities"].append(line_no)
    if not (text.isascii() and summary.isascii()):
        facts["non_ascii"].append(line_no)


# --------------------------------------------------------------------------------------------------------------
# Worker: one chunk of albums → metadata bytes, review bytes, descriptor files, quirk facts
# --------------------------------------------------------------------------------------------------------------


@dataclass
class _ChunkResult:
    metadata: bytes
    reviews: bytes
    counts: dict[str, int]
    items: dict[str, list[dict[str, Any]]]
    descriptor_bytes: int


def _run_chunk(chunk: _Chunk) -> _ChunkResult:
    """Generate every album of the chunk; descriptor files are written directly into the output dir."""
    desc_dir = Path(chunk.out_dir) / _DESC_DIR
    meta_lines: list[bytes] = []
    review_lines: list[bytes] = []
    counts: dict[str, int] = dict.fromkeys(QUIRKS, 0)
    items: dict[str, list[dict[str, Any]]] = {q: [] for q in sorted(_LISTED_QUIRKS)}
    desc_bytes = 0
    r0 = f0 = 0
    for local in range(chunk.stop - chunk.start):
        index = chunk.start + local
        kind, n_tracks = int(chunk.kind[local]), int(chunk.n_tracks[local])
        album = _make_album(chunk.seed, index, int(chunk.artist[local]), n_tracks, kind != 2)
        counts["album_without_descriptor"] += kind == 2
        counts["descriptor_without_reviews"] += kind == 1
        meta_lines.append(_metadata_line(album, chunk, local, counts, items))
        desc_bytes += _write_descriptors(album, chunk, f0, n_tracks, desc_dir, counts, items)
        f0 += n_tracks
        lines, facts = _review_lines(album, chunk, local, r0)
        r0 += len(lines)
        review_lines.extend(lines)
        for quirk, line_nos in facts.items():
            counts[quirk] += len(line_nos)
            if quirk in _LISTED_QUIRKS:
                items[quirk].extend({"source": _REVIEWS_FILE, "line": n, "amazon_id": album.asin} for n in line_nos)
    return _ChunkResult(b"".join(meta_lines), b"".join(review_lines), counts, items, desc_bytes)


def _metadata_line(album: _Album, chunk: _Chunk, local: int, counts: dict, items: dict) -> bytes:
    """Serialise the album's metadata; the broken-metadata quirk truncates the line (keeping its newline)."""
    line = orjson.dumps(_metadata_record(album, chunk.n_albums, chunk.seed))
    if chunk.broken_meta[local]:
        line = line[: max(5, int(len(line) * album.rng.uniform(0.2, 0.8)))]
        counts["broken_metadata"] += 1
        items["broken_metadata"].append({"source": _META_FILE, "line": album.index + 1, "amazon_id": album.asin})
    return line + b"\n"


def _write_descriptors(
    album: _Album, chunk: _Chunk, f0: int, n_tracks: int, desc_dir: Path, counts: dict, items: dict
) -> int:
    """Write the album's descriptor files (first track for MARD, a sorted sample of songs when augmented)."""
    rng = album.rng
    if n_tracks == 0:
        return 0
    song_nos = sorted(rng.choice(len(album.songs), size=n_tracks, replace=False)) if n_tracks > 1 else [0]
    written = 0
    for t, song_no in enumerate(song_nos):
        code = int(chunk.file_cat[f0 + t])
        quirk = _FILE_CATS[code - 1] if code else None
        no_genre = bool(chunk.file_no_genre[f0 + t])
        mbid = album.songs[int(song_no)][1]
        info = _TrackInfo(album, int(song_no), mbid, genre_tag=not no_genre, asin_tag=bool(rng.random() < 0.3))
        doc = _descriptor_doc(info, rng)
        data, detail = _serialize_doc(doc, quirk, rng)
        name = _descriptor_name(album.asin, mbid, quirk == "bad_filename", rng)
        (desc_dir / name).write_bytes(data)
        written += len(data)
        if quirk:
            counts[quirk] += 1
            item = {"source": name, "amazon_id": album.asin}
            if detail:
                item["detail"] = detail
            items[quirk].append(item)
        counts["descriptor_without_genre"] += no_genre and quirk != "broken_descriptor"
    return written


# --------------------------------------------------------------------------------------------------------------
# Orchestration
# --------------------------------------------------------------------------------------------------------------


def _prepare_out_dir(out_dir: Path, overwrite: bool) -> Path:
    """Refuse a non-empty target unless overwriting; return the temporary sibling to generate into."""
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())) and not overwrite:
        raise FileExistsError(f"{out_dir} exists and is not empty (pass overwrite=true to replace it)")
    tmp = out_dir.parent / f"{out_dir.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    (tmp / _DESC_DIR).mkdir(parents=True)
    return tmp


def _commit(tmp: Path, out_dir: Path) -> None:
    """Move the finished tree into place; an existing target is swapped out first and deleted after."""
    old = None
    if out_dir.exists():
        old = out_dir.parent / f"{out_dir.name}.old-{os.getpid()}"
        out_dir.rename(old)
    tmp.rename(out_dir)
    if old is not None:
        if old.is_dir():
            shutil.rmtree(old)
        else:
            old.unlink()


def _results(chunks: list[_Chunk], workers: int) -> Iterator[_ChunkResult]:
    """Chunk results in album order, in-process or from a process pool (the output is the same)."""
    if workers <= 1 or len(chunks) <= 1:
        yield from map(_run_chunk, chunks)
        return
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    with ctx.Pool(workers) as pool:
        yield from pool.imap(_run_chunk, chunks)


def generate(
    out_dir: Path,
    albums: int = 600,
    seed: int = 0,
    tracks_per_album: int = 1,
    quirks: bool | Iterable[str] | Mapping[str, bool] = True,
    workers: int | None = None,
    *,
    proportions: str = "auto",
    overwrite: bool = False,
) -> dict[str, Any]:
    """Write a synthetic MARD raw directory to `out_dir` and return its summary (also in DIR/.synth.json).

    `proportions`: "real" (MARD's: 13% paired, 30% descriptor-only, 57% review-only), "demo" (80/8/12, so a
    small run is mostly usable) or "auto" (real at full size, demo below). The output is generated next to
    `out_dir` and renamed into place at the end, so a crash never leaves a half-written dataset.
    """
    if albums < 1:
        raise ValueError(f"albums must be ≥ 1, got {albums}")
    if tracks_per_album < 1:
        raise ValueError(f"tracks_per_album must be ≥ 1, got {tracks_per_album}")
    if proportions not in ("auto", "real", "demo"):
        raise ValueError(f"proportions must be 'auto', 'real' or 'demo', got {proportions!r}")
    if proportions == "auto":
        proportions = "real" if albums >= FULL_SCALE["albums"] else "demo"
    enabled = normalize_quirks(quirks)
    workers = (os.cpu_count() or 1) if workers is None else max(1, int(workers))
    t0 = time.perf_counter()
    out_dir = Path(out_dir).absolute()
    tmp = _prepare_out_dir(out_dir, overwrite)
    try:
        plan = _make_plan(albums, seed, tracks_per_album, enabled, proportions)
        size = max(4, min(256, math.ceil(albums / (workers * 8))))
        info = _write_all(plan, tmp, list(_chunks(plan, tmp, size)), workers)
        info["params"] = {
            "albums": albums,
            "seed": seed,
            "tracks_per_album": tracks_per_album,
            "quirks": sorted(enabled),
            "proportions": proportions,
        }
        (tmp / SYNTH_INFO_FILE).write_bytes(orjson.dumps(info, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
        _commit(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    summary = dict(info)
    summary["out_dir"] = str(out_dir)
    summary["elapsed_s"] = round(time.perf_counter() - t0, 3)
    return summary


def _write_all(plan: _Plan, tmp: Path, chunks: list[_Chunk], workers: int) -> dict[str, Any]:
    """Stream chunk results into the two JSON-lines files and total the counts (deterministic order)."""
    quirk_counts = dict.fromkeys(QUIRKS, 0)
    items: dict[str, list[dict[str, Any]]] = {q: [] for q in sorted(_LISTED_QUIRKS)}
    desc_bytes = 0
    with (tmp / _META_FILE).open("wb") as meta, (tmp / _REVIEWS_FILE).open("wb") as reviews:
        for res in _results(chunks, workers):
            meta.write(res.metadata)
            reviews.write(res.reviews)
            desc_bytes += res.descriptor_bytes
            for q, n in res.counts.items():
                quirk_counts[q] += n
            for q, lst in res.items.items():
                items[q].extend(lst)
    paired = plan.kind == 0
    counts = {
        "albums": int(plan.kind.size),
        "paired_albums": int(paired.sum()),
        "descriptor_only_albums": int((plan.kind == 1).sum()),
        "review_only_albums": int((plan.kind == 2).sum()),
        "reviews": int(plan.n_reviews.sum()),
        "reviews_of_paired_albums": int(plan.n_reviews[paired].sum()),
        "descriptor_files": int(plan.n_tracks.sum()),
        "descriptor_bytes": desc_bytes,
        "metadata_bytes": (tmp / _META_FILE).stat().st_size,
        "reviews_bytes": (tmp / _REVIEWS_FILE).stat().st_size,
    }
    return {
        "generator": "mte.data.synth",
        "format_version": _FORMAT_VERSION,
        "counts": counts,
        "quirks": quirk_counts,
        "quirk_items": items,
        "line_numbers": "1-based",
    }


def summary_line(summary: Mapping[str, Any]) -> str:
    """One human line: sizes, time and the quirk counts (used by the CLI)."""
    c = summary["counts"]
    size_mb = (c["descriptor_bytes"] + c["metadata_bytes"] + c["reviews_bytes"]) / 1e6
    quirks = " ".join(f"{k}={v}" for k, v in summary["quirks"].items() if v)
    return (
        f"synthetic MARD: {c['albums']} albums ({c['paired_albums']} paired, {c['descriptor_only_albums']} "
        f"descriptor-only, {c['review_only_albums']} review-only), {c['reviews']} reviews, "
        f"{c['descriptor_files']} descriptor files, {size_mb:.1f} MB in {summary.get('elapsed_s', 0):.1f} s; "
        f"quirks: {quirks or 'none'}"
    )
