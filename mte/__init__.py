"""mte — music–text embeddings: a joint space of album review text and AcousticBrainz audio descriptors."""

__version__ = "0.1.0"
