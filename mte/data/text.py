"""Word-level vocabulary for the bag-of-words and LSTM text branches.

The published model embedded reviews as the mean of trainable word embeddings over a 30k–60k word vocabulary with
stop words removed and reviews cut at 400 tokens. :class:`Vocabulary` reproduces that around a Rust ``tokenizers``
``Tokenizer(WordLevel)``: its saved ``tokenizer.json`` + ``vocab_config.json`` fully determine encoding, so search
queries are encoded later exactly as the reviews were.

Id layout (why it looks like this): ``0 = [PAD]``, ``1 = [UNK]``, then the ``size - 2`` most frequent non-stop
words (ties broken alphabetically), then — only when stop words are removed — every stop-word form with an id
``>= size``. Stop words have to be *in* the WordLevel vocabulary, otherwise they would map to ``[UNK]`` and could not
be told apart from rare words; giving them ids past ``size`` lets encoding drop them with one integer comparison and
keeps them out of the embedding table (``size`` rows).

Two encoders, one result. :meth:`Vocabulary.encode_batch` runs the Rust tokenizer (the canonical path, used for
queries). Measured on this project's 2-core machine it manages only ~1M tokens/s (it builds a full ``Encoding``
object per text), i.e. ~40 s for MARD's 263k reviews, so :meth:`Vocabulary.encode_series` (used by prepare) splits
words with polars instead: for ASCII-only texts NFKC and Unicode lower-casing are the identity / plain ASCII
lower-casing and ``\\w`` means ``[A-Za-z0-9_]`` in every regex engine, so a polars regex gives exactly the
tokenizer's words; texts with any non-ASCII character go through the tokenizer's own normaliser and pre-tokeniser.
``tests/test_text.py`` checks both paths agree, including on random Unicode.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers

from mte.paths import resource_path

if TYPE_CHECKING:  # polars is imported lazily: prepare's cache-hit path imports this module and must stay light
    import polars as pl

PAD_TOKEN, UNK_TOKEN = "[PAD]", "[UNK]"
PAD_ID, UNK_ID = 0, 1
TOKENIZER_FILE = "tokenizer.json"
CONFIG_FILE = "vocab_config.json"
VOCAB_FORMAT = 1

# A word is a run of letters/digits, with inner apostrophes kept ("don't", "band's") so that the stop-word list's
# contractions match whole tokens. Everything else (punctuation, symbols, spaces) separates words and is dropped:
# punctuation carries little about the music and would take some of the most frequent vocabulary slots.
WORD_PATTERN = r"\w+(?:'\w+)*"


@dataclass
class VocabConfig:
    """How the vocabulary is built; part of the prepare config (and so of the processed dir's cache key)."""

    size: int = 30000  # ids that can be emitted, [PAD] and [UNK] included (= embedding table rows)
    min_freq: int = 2  # words seen fewer times in the training texts map to [UNK]
    # words used in the reviews of fewer albums map to [UNK]: names (artists, titles, members) live in one artist's
    # reviews, and a model that learns them memorises the training catalogue instead of how music is described.
    # A count (>= 1), or a share of the albums whose reviews the dir holds (0 < share < 1, like scikit-learn's
    # min_df): a share means the same in a 3,000-album dir and in the whole of MARD, a count does not
    min_albums: float = 1
    # the same, counted in artists (one artist's albums count once): a name of an artist with many albums passes a
    # min_albums filter, but not this one; 1 = off; a count or a share of the dir's artists
    min_artists: float = 1
    # min_albums / min_artists never exceed this share of the albums / artists whose reviews the dir holds: in a
    # small dir an absolute count would also drop genre words (25 albums may be every jazz album of 300)
    spread_cap: float = 0.01
    lowercase: bool = True
    remove_stopwords: bool = True
    max_length: int = 400  # tokens kept per text, counted after stop-word removal


def effective_minimum(minimum: float, total: int | None, spread_cap: float = 1.0) -> int:
    """The album (or artist) count a ``vocab.min_albums`` / ``min_artists`` value asks for in a dir of ``total``.

    ``minimum`` >= 1 is a count, 0 < ``minimum`` < 1 a share of ``total`` (rounded up); either is capped at
    ``spread_cap`` of ``total`` (never below 1). ``total=None`` (a vocabulary built outside prepare): a count
    applies as given; a share cannot be resolved.
    """
    if not minimum > 0:
        raise ValueError(f"vocabulary minimum must be a count >= 1 or a share in (0, 1), got {minimum}")
    if total is None:
        if minimum < 1:
            raise ValueError(f"vocabulary minimum {minimum} is a share: it needs the dir's album/artist total")
        return int(minimum)
    count = math.ceil(minimum * total) if minimum < 1 else int(minimum)
    return max(1, min(count, math.ceil(spread_cap * total)))


def load_stopwords(path: Path | None = None) -> list[str]:
    """The stop-word list shipped in ``mte/resources/stopwords.txt`` (sorted, de-duplicated)."""
    text = (path or resource_path("stopwords.txt")).read_text(encoding="utf-8")
    words = {line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")}
    return sorted(words)


def _normalizer(lowercase: bool) -> normalizers.Normalizer:
    """NFKC folds compatibility forms (full-width letters, ligatures); curly apostrophes become straight ones."""
    steps: list[normalizers.Normalizer] = [normalizers.NFKC(), normalizers.Replace("\u2019", "'")]
    if lowercase:
        steps.append(normalizers.Lowercase())
    return normalizers.Sequence(steps)


def _new_tokenizer(vocab: dict[str, int], lowercase: bool) -> Tokenizer:
    tok = Tokenizer(models.WordLevel(vocab, unk_token=UNK_TOKEN))
    tok.normalizer = _normalizer(lowercase)
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(WORD_PATTERN), behavior="removed", invert=True)
    return tok


def word_splitter(lowercase: bool) -> Tokenizer:
    """A tokenizer with the vocabulary's normaliser and pre-tokeniser but no words yet (for :func:`split_words`)."""
    return _new_tokenizer({PAD_TOKEN: PAD_ID, UNK_TOKEN: UNK_ID}, lowercase)


def _stop_forms(stopwords: Iterable[str], lowercase: bool) -> list[str]:
    """Surface forms treated as stop words: as listed, plus Capitalised/UPPER ones when case is kept."""
    words = list(stopwords)
    forms = set(words)
    if not lowercase:
        forms |= {w.capitalize() for w in words} | {w.upper() for w in words}
    norm = _normalizer(lowercase)
    return sorted({s for s in (norm.normalize_str(w) for w in forms) if s})


def _as_series(texts: Sequence[str] | pl.Series) -> pl.Series:
    import polars as pl

    if isinstance(texts, pl.Series):
        return texts.cast(pl.String).fill_null("")
    return pl.Series("text", list(texts), dtype=pl.String).fill_null("")


def split_words(texts: Sequence[str] | pl.Series, tokenizer: Tokenizer) -> pl.Series:
    """Each text's words (List(String)), exactly as ``tokenizer``'s normaliser + pre-tokeniser produce them.

    ASCII-only texts take the vectorised polars route (see the module doc for why that is exact); the others are
    handed to the tokenizer itself, one by one. ``tokenizer`` must come from this module (:func:`word_splitter`
    or a :class:`Vocabulary`): the polars route re-implements *its* normaliser and pre-tokeniser.
    """
    import polars as pl

    s = _as_series(texts)
    lowercase = _lowercases(tokenizer)
    ascii_mask = s.str.len_bytes() == s.str.len_chars()
    fast = s.str.to_lowercase() if lowercase else s
    words = fast.str.extract_all(WORD_PATTERN).fill_null([])
    if bool(ascii_mask.all()):
        return words.alias("words")
    norm, pre = tokenizer.normalizer, tokenizer.pre_tokenizer
    slow: list[list[str] | None] = [None] * len(s)
    rows = (~ascii_mask).arg_true()
    for i, text in zip(rows.to_list(), s.gather(rows).to_list(), strict=True):
        normalized = norm.normalize_str(text) if norm is not None else text
        slow[i] = [w for w, _ in pre.pre_tokenize_str(normalized)]
    slow_series = pl.Series("words", slow, dtype=pl.List(pl.String))
    return words.zip_with(ascii_mask, slow_series).alias("words")


def _lowercases(tokenizer: Tokenizer) -> bool:
    """Whether the tokenizer's normaliser lower-cases (read from its own JSON, so loaded files decide)."""
    spec = json.loads(tokenizer.to_str()).get("normalizer") or {}
    steps = spec.get("normalizers", [spec])
    return any(step.get("type") == "Lowercase" for step in steps)


def _words_in_texts_of(words: pl.Series, keys: pl.Series | None, minimum: int, what: str) -> pl.DataFrame:
    """The words (column ``word``) used in the texts of at least ``minimum`` distinct ``keys`` (albums, artists);
    ``what`` names a key ("album id") for the error."""
    import polars as pl

    if keys is None or len(keys) != len(words):
        raise ValueError(f"vocab.min_{what.split()[0]}s needs each text's {what} (row-aligned with the texts)")
    return (
        pl.DataFrame({"word": words, "key": keys})
        .explode("word")
        .drop_nulls("word")
        .group_by("word")
        .agg(pl.col("key").n_unique().alias("n"))
        .filter(pl.col("n") >= minimum)
        .select("word")
    )


class Vocabulary:
    """A WordLevel tokenizer + stop-word removal + truncation; builds, encodes, saves and loads."""

    def __init__(self, tokenizer: Tokenizer, config: VocabConfig, size: int, stopwords: Sequence[str]):
        self.tokenizer = tokenizer
        self.config = config
        self._size = size
        self.stopwords = list(stopwords)
        self._fast_ok = _fast_path_matches(tokenizer, config)

    # ------------------------------------------------------------------ building
    @classmethod
    def build(
        cls, texts: Sequence[str] | pl.Series, cfg: VocabConfig, stopwords: Sequence[str] | None = None
    ) -> Vocabulary:
        """Count words in ``texts``; keep the ``cfg.size - 2`` most frequent non-stop words seen ``>= min_freq``."""
        words = split_words(texts, word_splitter(cfg.lowercase))
        return cls.build_from_words(words, cfg, stopwords)

    @classmethod
    def build_from_words(
        cls,
        words: pl.Series,
        cfg: VocabConfig,
        stopwords: Sequence[str] | None = None,
        albums: pl.Series | None = None,
        artists: pl.Series | None = None,
        totals: tuple[int, int] | None = None,
    ) -> Vocabulary:
        """Like :meth:`build`, from :func:`split_words` output (prepare splits the reviews once for both steps).

        ``albums`` / ``artists`` (each text's album id / artist key, row-aligned) are needed when ``cfg.min_albums``
        / ``cfg.min_artists`` > 1: a word must then occur in the texts of at least that many albums / artists.
        ``totals``: how many albums and artists the dir holds; each minimum is capped at ``cfg.spread_cap`` of its
        total (never below 1). Without it (a vocabulary built outside prepare) the minimums apply as given."""
        import polars as pl

        if cfg.size < 3:  # 2 would hold only [PAD] and [UNK]: every review all-unknown
            raise ValueError(f"vocab.size must be >= 3 ([PAD], [UNK] and a word), got {cfg.size}")
        if cfg.max_length < 1:  # 0 would keep no word of any review
            raise ValueError(f"vocab.max_length must be >= 1, got {cfg.max_length}")
        stop = _stop_forms(stopwords if stopwords is not None else load_stopwords(), cfg.lowercase)
        stop = stop if cfg.remove_stopwords else []
        counts = words.explode().drop_nulls().to_frame("word").group_by("word").len()
        album_total, artist_total = totals if totals is not None else (None, None)
        for what, minimum, keys, total in (("album id", cfg.min_albums, albums, album_total),
                                           ("artist key", cfg.min_artists, artists, artist_total)):
            minimum = effective_minimum(minimum, total, cfg.spread_cap)
            if minimum > 1:
                counts = counts.join(_words_in_texts_of(words, keys, minimum, what), on="word", how="semi")
        counts = (
            counts.filter(pl.col("len") >= max(1, cfg.min_freq))
            .filter(~pl.col("word").is_in([*stop, PAD_TOKEN, UNK_TOKEN]))
            .sort(["len", "word"], descending=[True, False])
            .head(cfg.size - 2)
        )
        vocab = {PAD_TOKEN: PAD_ID, UNK_TOKEN: UNK_ID}
        for w in counts["word"].to_list():
            vocab[w] = len(vocab)
        size = len(vocab)
        for w in stop:
            vocab[w] = len(vocab)
        return cls(_new_tokenizer(vocab, cfg.lowercase), cfg, size, stop)

    # ------------------------------------------------------------------ encoding
    @property
    def size(self) -> int:
        """Number of ids encoding can emit ([PAD] and [UNK] included): the embedding table's rows."""
        return self._size

    @property
    def max_length(self) -> int:
        return self.config.max_length

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids per text via the Rust tokenizer: stop words dropped, then cut at ``max_length``; no padding.

        This is the canonical encoder (search queries use it); :meth:`encode_series` gives the same ids faster.
        """
        if len(texts) == 0:
            return []
        encode = getattr(self.tokenizer, "encode_batch_fast", self.tokenizer.encode_batch)
        encodings = encode([t if isinstance(t, str) else "" for t in texts], add_special_tokens=False)
        limit, keep = self._size, self.config.max_length
        # Stop words hold ids >= size; without stop-word removal no id reaches it, so one filter covers both.
        return [[i for i in enc.ids if i < limit][:keep] for enc in encodings]

    def encode(self, text: str) -> list[int]:
        """One text (e.g. a search query); same rules as :meth:`encode_batch`."""
        return self.encode_batch([text])[0]

    def encode_series(self, texts: Sequence[str] | pl.Series) -> pl.Series:
        """Like :meth:`encode_batch` but vectorised with polars; returns a ``List(UInt32)`` Series named tokens."""
        import polars as pl

        if not self._fast_ok:  # a tokenizer.json this code did not write: trust only the tokenizer itself
            return pl.Series("tokens", self.encode_batch(_as_series(texts).to_list()), dtype=pl.List(pl.UInt32))
        return self.encode_words(split_words(texts, self.tokenizer))

    def encode_words(self, words: pl.Series) -> pl.Series:
        """Map :func:`split_words` output to ids (unknown → [UNK]), drop stop words, cut at ``max_length``."""
        import polars as pl

        vocab = self.tokenizer.get_vocab()
        keys = pl.Series("k", list(vocab.keys()), dtype=pl.String)
        ids = pl.Series("v", list(vocab.values()), dtype=pl.UInt32)
        size = self._size
        encoded = words.list.eval(
            pl.element().replace_strict(keys, ids, default=UNK_ID, return_dtype=pl.UInt32)
        )
        encoded = encoded.list.eval(pl.element().filter(pl.element() < size)).list.head(self.config.max_length)
        return encoded.cast(pl.List(pl.UInt32)).alias("tokens")

    def token_to_id(self, token: str) -> int | None:
        return self.tokenizer.token_to_id(token)

    def id_to_token(self, idx: int) -> str | None:
        return self.tokenizer.id_to_token(idx)

    def __len__(self) -> int:
        return self._size

    # ------------------------------------------------------------------ persistence
    def save(self, directory: Path) -> None:
        """Write ``tokenizer.json`` and ``vocab_config.json``; together they fully determine encoding."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save(str(directory / TOKENIZER_FILE), pretty=False)
        meta = {
            "format": VOCAB_FORMAT,
            "size": self._size,
            "config": asdict(self.config),
            "pad_id": PAD_ID,
            "unk_id": UNK_ID,
            "stopwords": self.stopwords,
        }
        (directory / CONFIG_FILE).write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, directory: Path) -> Vocabulary:
        """Read a vocabulary written by :meth:`save` (a processed dir's ``vocab/``)."""
        directory = Path(directory)
        cfg_path, tok_path = directory / CONFIG_FILE, directory / TOKENIZER_FILE
        if not cfg_path.is_file() or not tok_path.is_file():
            raise FileNotFoundError(f"not a saved Vocabulary (need {TOKENIZER_FILE} and {CONFIG_FILE}): {directory}")
        return cls.from_json(tok_path.read_text(encoding="utf-8"), cfg_path.read_text(encoding="utf-8"))

    @classmethod
    def from_json(cls, tokenizer_json: str, config_json: str) -> Vocabulary:
        """A vocabulary from the texts of its two files (a model's input contract carries them, not the dir)."""
        meta = json.loads(config_json)
        config = VocabConfig(**meta["config"])
        return cls(Tokenizer.from_str(tokenizer_json), config, int(meta["size"]), meta.get("stopwords", []))


def _fast_path_matches(tokenizer: Tokenizer, config: VocabConfig) -> bool:
    """True when the tokenizer's normaliser/pre-tokeniser are the ones :func:`_new_tokenizer` makes.

    ``encode_series`` re-implements them for ASCII text; a vocabulary saved by another version of this code (or
    edited by hand) might differ, and then only the tokenizer itself may encode.
    """
    mine = json.loads(word_splitter(config.lowercase).to_str())
    theirs = json.loads(tokenizer.to_str())
    return all(mine.get(k) == theirs.get(k) for k in ("normalizer", "pre_tokenizer", "added_tokens"))
