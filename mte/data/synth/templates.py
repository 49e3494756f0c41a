"""Review text templates: Amazon chatter (none of it mentions factor vocabulary) and the factor sentences."""

from __future__ import annotations

import itertools

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
_ENTITIES = ("&amp;", "&quot;", "&#39;")
_MIN_REVIEW_TIME = 883612800  # 1998-01-01
_MAX_REVIEW_TIME = 1406073600  # 2014-07-23, end of the Amazon crawl
# Share of chatter sentences that are filler (real English words at their real frequencies, see lexicon.py)
# instead of templates, and their length (lognormal mu, sigma of the word count). Enough for a real-sized
# vocabulary, little enough that the factor words stay learnable: rare filler words keep near-random embeddings
# in a bag-of-words model, so every filler token dilutes the few words that carry the signal.
_FILLER_SHARE = 0.3
_FILLER_LENGTH = (2.2, 0.45)  # median 9 words
_FILLER_ENDS = (".", ".", ".", ".", "!", "?")
