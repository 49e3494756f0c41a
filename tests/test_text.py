"""Vocabulary: id layout, stop words, truncation, persistence, and that the fast (polars) and canonical (Rust
tokenizer) encoders always agree — the reviews are encoded with one and search queries with the other."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mte.data.text import (
    PAD_ID,
    UNK_ID,
    VocabConfig,
    Vocabulary,
    effective_minimum,
    load_stopwords,
    split_words,
    word_splitter,
)

CORPUS = [
    "The band's best album. Don't miss it!",
    "the best rock album of the 1970s, really the best",
    "Great rock; great songs & great lyrics.",
    "Rock rock ROCK",
]

NASTY = [
    "",
    "   ",
    "Don\u2019t stop — the band\u2019s café is ＦＵＬＬ-width ﬁne",
    "İstanbul STRASSE straße ǅemal",
    "日本語のレビュー、最高！ 5★★★★★ 🎸🎶",
    "e\u0301te\u0301 naïve Zoë coöperate",
    "tabs\tand\nnewlines\r\nand\u00a0nbsp\u2009thin",
    "'quoted' ''double'' rock'n'roll o'clock it's",
    "under_score snake_case __dunder__ 1,000,000 3.14 v2.0",
    "Ⅻ ① ² ½ ℃ ™ ﬀ",
    "\x00control\x07chars\x1b[0m",
    "ALL CAPS REVIEW OF THE BEST ALBUM",
]


def _vocab(**kw: object) -> Vocabulary:
    cfg = VocabConfig(**{"size": 50, "min_freq": 1, **kw})  # type: ignore[arg-type]
    return Vocabulary.build(CORPUS + NASTY, cfg)


def test_stopword_list_is_shipped_and_standard() -> None:
    words = load_stopwords()
    assert len(words) == 179  # NLTK's English list
    assert {"the", "and", "don't", "it's", "wouldn't"} <= set(words)
    assert all(w == w.lower() and w.strip() == w for w in words)


def test_id_layout_specials_then_frequency_then_stopwords() -> None:
    v = _vocab()
    vocab = v.tokenizer.get_vocab()
    assert vocab["[PAD]"] == PAD_ID == 0 and vocab["[UNK]"] == UNK_ID == 1
    # most frequent non-stop words first (ties alphabetical): rock ×5 (one via ALL CAPS lower-cased), best ×4 …
    assert vocab["rock"] == 2 and vocab["best"] == 3
    stop_ids = [vocab[w] for w in ("the", "and", "don't", "of")]
    assert all(i >= v.size for i in stop_ids)
    assert max(i for w, i in vocab.items() if w not in set(v.stopwords)) == v.size - 1


def test_stopwords_dropped_unknown_kept_and_lowercased() -> None:
    v = _vocab()
    ids = v.encode("The BEST zebra of rock")
    assert ids == [v.token_to_id("best"), UNK_ID, v.token_to_id("rock")]


def test_keep_stopwords_and_case() -> None:
    v = _vocab(remove_stopwords=False, lowercase=False)
    assert v.token_to_id("the") is not None and v.token_to_id("the") < v.size
    assert v.encode("The the")[1] == v.token_to_id("the")
    assert v.token_to_id("ROCK") is not None  # case kept
    w = _vocab(lowercase=False)
    assert w.encode("The THE the") == []  # capitalised/upper stop-word forms are dropped too


def test_size_and_min_freq() -> None:
    v = Vocabulary.build(CORPUS, VocabConfig(size=4, min_freq=1))
    assert v.size == 4  # [PAD], [UNK], rock, best
    assert v.encode("rock best great") == [2, 3, UNK_ID]
    v2 = Vocabulary.build(CORPUS, VocabConfig(size=1000, min_freq=3))
    assert v2.token_to_id("great") is not None  # 3 occurrences
    assert v2.encode("lyrics") == [UNK_ID]  # 1 occurrence < min_freq


def test_truncation_counts_tokens_after_stopword_removal() -> None:
    v = _vocab(max_length=3)
    text = "the rock the the best the great the rock"
    assert v.encode(text) == [v.token_to_id("rock"), v.token_to_id("best"), v.token_to_id("great")]
    assert v.encode_series([text]).to_list() == [v.encode(text)]


def test_save_load_roundtrip(tmp_path: Path) -> None:
    v = _vocab()
    v.save(tmp_path / "vocab")
    assert sorted(p.name for p in (tmp_path / "vocab").iterdir()) == ["tokenizer.json", "vocab_config.json"]
    w = Vocabulary.load(tmp_path / "vocab")
    assert w.size == v.size and w.config == v.config
    assert w.encode_batch(NASTY + CORPUS) == v.encode_batch(NASTY + CORPUS)
    assert w.encode_series(NASTY + CORPUS).to_list() == v.encode_batch(NASTY + CORPUS)


def test_load_rejects_a_non_vocab_dir(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not a saved Vocabulary"):
        Vocabulary.load(tmp_path)


@pytest.mark.parametrize("lowercase", [True, False])
def test_fast_and_canonical_encoders_agree_on_nasty_text(lowercase: bool) -> None:
    v = _vocab(lowercase=lowercase)
    texts = NASTY + CORPUS
    fast = v.encode_series(texts)
    assert fast.dtype == pl.List(pl.UInt32)
    assert fast.to_list() == v.encode_batch(texts)


def test_split_words_matches_the_tokenizer_pretokenizer() -> None:
    tok = word_splitter(True)
    words = split_words(NASTY, tok).to_list()
    expected = [[w for w, _ in tok.pre_tokenizer.pre_tokenize_str(tok.normalizer.normalize_str(t))] for t in NASTY]
    assert words == expected
    assert split_words(["Don't STOP"], tok).to_list() == [["don't", "stop"]]


def test_empty_inputs() -> None:
    v = _vocab()
    assert v.encode_batch([]) == []
    assert v.encode_series([]).to_list() == []
    assert v.encode("") == []


_TEXT = st.text(
    alphabet=st.one_of(
        st.sampled_from(list("abcXYZ019 '\u2019-_.,!?\n\t&;<>é")),
        st.characters(codec="utf-8", exclude_categories=("Cs",)),
    ),
    max_size=40,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts=st.lists(_TEXT, min_size=1, max_size=8), lowercase=st.booleans())
def test_fast_and_canonical_encoders_agree_on_random_text(texts: list[str], lowercase: bool) -> None:
    v = Vocabulary.build(texts + CORPUS, VocabConfig(size=30, min_freq=1, lowercase=lowercase))
    assert v.encode_series(texts).to_list() == v.encode_batch(texts)


def test_min_albums_keeps_only_words_spread_over_enough_albums():
    import polars as pl

    texts = ["zorblax zorblax zorblax great", "zorblax great groove", "great groove", "groove"]
    albums = pl.Series(["A", "A", "B", "C"])
    words = split_words(texts, word_splitter(True))
    spread = Vocabulary.build_from_words(words, VocabConfig(min_freq=1, min_albums=2), stopwords=[], albums=albums)
    kept = {w for w in ("zorblax", "great", "groove") if spread.tokenizer.token_to_id(w) is not None}
    assert kept == {"great", "groove"}  # "zorblax": 4 uses, but all in album A's reviews (a name)
    plain = Vocabulary.build_from_words(words, VocabConfig(min_freq=1), stopwords=[])
    assert plain.tokenizer.token_to_id("zorblax") is not None
    with pytest.raises(ValueError, match="album id"):
        Vocabulary.build_from_words(words, VocabConfig(min_albums=2), stopwords=[])


def test_min_artists_counts_an_artists_albums_once():
    """A prolific artist's name is in the reviews of many albums, all by one artist: min_albums keeps it,
    min_artists does not; words that reviews of several artists use stay."""
    import polars as pl

    texts = ["zorblax great", "zorblax groove", "zorblax great", "great groove", "groove"]
    albums = pl.Series(["A1", "A2", "A3", "B1", "C1"])
    artists = pl.Series(["X", "X", "X", "Y", "Z"])
    words = split_words(texts, word_splitter(True))

    def kept(cfg: VocabConfig) -> set[str]:
        v = Vocabulary.build_from_words(words, cfg, stopwords=[], albums=albums, artists=artists)
        return {w for w in ("zorblax", "great", "groove") if v.tokenizer.token_to_id(w) is not None}

    assert kept(VocabConfig(min_freq=1, min_albums=3)) == {"zorblax", "great", "groove"}
    assert kept(VocabConfig(min_freq=1, min_artists=2)) == {"great", "groove"}
    with pytest.raises(ValueError, match="artist key"):
        Vocabulary.build_from_words(words, VocabConfig(min_artists=2), stopwords=[], albums=albums)


def test_a_share_minimum_scales_with_the_dir():
    """min_albums=0.3 asks for 30% of the dir's albums: 2 of 4 here (zorblax, in one album's reviews, goes), 3 of 10
    (only groove stays), the same words as the counts they resolve to; the cap still applies."""
    import polars as pl

    texts = ["zorblax great", "zorblax groove", "great groove", "groove"]
    albums = pl.Series(["A", "A", "C", "D"])
    words = split_words(texts, word_splitter(True))

    def kept(minimum: float, totals: tuple[int, int] | None, cap: float = 1.0) -> set[str]:
        cfg = VocabConfig(min_freq=1, min_albums=minimum, spread_cap=cap)
        v = Vocabulary.build_from_words(words, cfg, stopwords=[], albums=albums, totals=totals)
        return {w for w in ("zorblax", "great", "groove") if v.tokenizer.token_to_id(w) is not None}

    assert kept(0.3, (4, 0)) == kept(2, None) == {"great", "groove"}
    assert kept(0.3, (10, 0)) == kept(3, None) == {"groove"}
    assert kept(0.3, (10, 0), cap=0.2) == kept(2, None)  # capped at 20% of 10
    assert effective_minimum(0.009, 2760) == 25 and effective_minimum(0.009, 45846, 0.01) == 413
    assert effective_minimum(25, 45846, 0.01) == 25 and effective_minimum(25, 300, 0.01) == 3
    with pytest.raises(ValueError, match="share"):
        kept(0.3, None)
    with pytest.raises(ValueError, match="count >= 1 or a share"):
        effective_minimum(0, 100)


def test_spread_minimums_are_capped_by_the_size_of_the_dir():
    """min_albums=25 in a 300-album dir would drop every word of a genre with fewer than 25 albums: the minimum
    never exceeds spread_cap (1%) of the dir's albums; in a large dir it applies as given."""
    import polars as pl

    texts = ["zorblax great", "zorblax groove", "great groove", "groove"]
    albums = pl.Series(["A", "B", "C", "D"])
    words = split_words(texts, word_splitter(True))

    def kept(totals: tuple[int, int] | None) -> set[str]:
        v = Vocabulary.build_from_words(words, VocabConfig(min_freq=1, min_albums=3), stopwords=[], albums=albums,
                                        artists=albums, totals=totals)
        return {w for w in ("zorblax", "great", "groove") if v.tokenizer.token_to_id(w) is not None}

    assert kept(None) == {"groove"}  # 3 albums
    assert kept((10_000, 10_000)) == {"groove"}  # cap 100 > 3: the minimum as given
    assert kept((200, 200)) == {"zorblax", "great", "groove"}  # cap ceil(2.0) = 2 albums
    assert kept((100, 100)) == {"zorblax", "great", "groove"}  # cap 1: no filter
