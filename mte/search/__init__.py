"""Search: ``python -m mte.search`` and ``mte.export`` (engine, gallery, FAISS, Essentia extraction)."""
