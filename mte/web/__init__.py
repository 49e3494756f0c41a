"""The local search page (``python -m mte.serve``): a FastAPI app over :class:`mte.search.engine.SearchEngine`.

Needs the ``web`` extra (fastapi, uvicorn, python-multipart); audio uploads also need the ``audio`` extra.
"""
