"""Metadata records and review lines of one album."""

from __future__ import annotations

import random
from datetime import datetime, timezone
from typing import Any

import orjson

from mte.data.synth.albums import _Album
from mte.data.synth.common import _REVIEW_CATS, _base36, _reviewer_id, _reviewer_name, amazon_id
from mte.data.synth.lexicon import FillerStream
from mte.data.synth.plan import _Chunk
from mte.data.synth.templates import (
    _CHATTER,
    _CHATTER_CUM_WEIGHTS,
    _CLOSE_MID,
    _CLOSE_NEG,
    _CLOSE_POS,
    _ENTITIES,
    _FEATURE_SENTENCES,
    _FILLER_ENDS,
    _FILLER_LENGTH,
    _FILLER_SHARE,
    _HTML_SENTENCES,
    _MAX_REVIEW_TIME,
    _MIN_REVIEW_TIME,
    _MOOD_SENTENCES,
    _NON_ASCII,
    _NON_UTF8_BYTES,
    _NON_UTF8_MARK,
    _OPEN_MID,
    _OPEN_NEG,
    _OPEN_POS,
    _PERSONS,
    _STYLE_SENTENCES,
    _SUMMARY_FACTOR,
    _SUMMARY_MID,
    _SUMMARY_NEG,
    _SUMMARY_POS,
    _TEMPO_SENTENCES,
    _TIMBRE_SENTENCES,
)
from mte.data.synth.vocabulary import _SUBGENRES, GENRES
from mte.data.synth.world import WorldWords, world_words

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


def _factor_sentences(
    rnd: random.Random, album: _Album, slots: dict[str, str], rules: WorldWords
) -> tuple[list[str], list[str]]:
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

    if rnd.random() < 0.6:
        genre = GENRES[album.genre if rnd.random() < 0.82 else rnd.randrange(len(GENRES))]
        if rnd.random() < 0.65:
            say(_STYLE_SENTENCES, rnd.choice(rules.genre_styles[genre]))
        else:
            say(_FEATURE_SENTENCES, rnd.choice(rules.genre_features[genre]))
    polar = (
        ("valence", v, 0.45, 0.4, _MOOD_SENTENCES),
        ("arousal", a, 0.45, 0.4, _MOOD_SENTENCES),
        ("bpm", (bpm - 110.0) / 30.0, 0.32, 0.5, _TEMPO_SENTENCES),
    )
    for name, value, p, noise, templates in polar:
        if rnd.random() < p:
            positive = value + rnd.gauss(0.0, noise) > 0.0
            say(templates, rnd.choice(rules.pole_words[name][0 if positive else 1]))
    if rnd.random() < 0.5:
        timbre = {"brightness": b, "distortion": 2.0 * d - 1.0, "acousticness": 2.0 * c - 1.0}
        names = list(timbre)
        name = rnd.choices(names, weights=[abs(timbre[k]) + 0.2 for k in names])[0]
        positive = timbre[name] + rnd.gauss(0.0, 0.4) > 0.0
        say(_TIMBRE_SENTENCES, rnd.choice(rules.pole_words[name][0 if positive else 1]))
    return out, words


def _summary(rnd: random.Random, rating: float, album: _Album, factor_words: list[str]) -> str:
    if factor_words and rnd.random() < 0.15:
        w = rnd.choice(factor_words)
        return rnd.choice(_SUMMARY_FACTOR).format(w=w, W=w.capitalize())
    pool = _SUMMARY_POS if rating >= 4 else _SUMMARY_NEG if rating <= 2 else _SUMMARY_MID
    return rnd.choice(pool).format(artist=album.artist.name, title=album.title)


def _filler_sentence(rnd: random.Random, filler: FillerStream) -> str:
    """A sentence of real English words at their real frequencies (word salad: it says nothing about the music)."""
    words = filler.take(max(3, min(40, int(rnd.lognormvariate(*_FILLER_LENGTH)))))
    return " ".join(words).capitalize() + rnd.choice(_FILLER_ENDS)


def _chatter(rnd: random.Random, rating: float, n: int, slots: dict[str, str], filler: FillerStream) -> list[str]:
    """n chatter sentences: templated ones whose sentiment follows the rating (without repeats unless the pools run
    dry), and, with probability _FILLER_SHARE each, filler sentences of real English words."""
    used: set[str] = set()
    out = []
    for _ in range(n):
        if rnd.random() < _FILLER_SHARE:
            out.append(_filler_sentence(rnd, filler))
            continue
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


def _review_text(rnd: random.Random, album: _Album, rating: float, long: bool, rules: WorldWords) -> tuple[str, str]:
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
    factor, factor_words = _factor_sentences(rnd, album, slots, rules)
    n_chatter = 120 + rnd.randrange(60) if long else min(40, max(1, int(rnd.lognormvariate(1.9, 0.75))))
    sentences = _chatter(rnd, rating, n_chatter, slots, album.filler) + factor
    rnd.shuffle(sentences)
    positive, negative = rating >= 4, rating <= 2
    if rnd.random() < 0.6:
        opener = _OPEN_POS if positive else _OPEN_NEG if negative else _OPEN_MID
        sentences.insert(0, rnd.choice(opener).format(**slots))
    if rnd.random() < 0.5:
        sentences.append(rnd.choice(_CLOSE_POS if positive else _CLOSE_NEG if negative else _CLOSE_MID))
    if long:  # a rant: always past the 'very long' threshold
        while sum(map(len, sentences)) + len(sentences) <= 5200:
            sentences.extend(_chatter(rnd, rating, 10, slots, album.filler))
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
        summary, text = _review_text(rnd, album, rating, quirk == "long_review", world_words(chunk.world))
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
