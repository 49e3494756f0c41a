"""The synthetic world's vocabulary: genres and their priors over the latent factors, the factor words, and names.

Factor order everywhere: valence, arousal, bpm, brightness, distortion, acousticness.
"""

from __future__ import annotations

import numpy as np

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
# Reviewer names and labels (artist names and titles come from mte.data.synth.lexicon)
# --------------------------------------------------------------------------------------------------------------

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
_LABELS = (
    "Columbia", "Rykodisc", "Atlantic", "Capitol", "Elektra", "Verve", "Blue Note", "Sony Music", "Warner Bros.",
    "Island", "Epic", "Virgin", "Mercury", "Geffen", "Deutsche Grammophon", "Nonesuch", "Sub Pop", "Rounder",
)  # fmt: skip
