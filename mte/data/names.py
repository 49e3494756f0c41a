"""The processed format's fixed names: split names, split methods, feature sets and review text fields.

One home for each, in a module that imports nothing: prepare's cache-hit path validates a config against these
without importing numpy or polars, and every other module (descriptors, splits, processed, prepare, the DataModule,
evaluation) imports them from here instead of keeping a copy that could drift.
"""

from __future__ import annotations

# The three splits of a processed dir, in the order they are listed in splits.json and the manifest.
SPLITS = ("train", "val", "test")
# data.split: album (random, album-grouped) | artist (artist-grouped: generalisation to unseen artists) | paper
# (the split the paper describes: 90% of albums train, one 10% set that is both val and test) | published (the
# published code's file-level split, leaky on purpose: mte.data.published_split).
SPLIT_METHODS = ("album", "artist", "paper", "published")
# data.features: see mte.data.descriptors for what each set holds.
FEATURE_SETS = ("seed169", "seed369", "lowlevel_all")
# data.text_fields: raw MARD review key → reviews.parquet column.
TEXT_FIELDS = {"summary": "summary", "reviewText": "text"}
