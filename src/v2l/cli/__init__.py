"""The `v2l` command line: a thin layer over the library (every verb has a Python equivalent). Built on Typer.

One module per verb group; importing this package registers every verb on `app`.
"""

from . import bench, codebook, data, info, plan, recipe, seed, serve, tasks, tokenizer, train, tuning, words  # noqa: F401  (register verbs)
from .app import app, main

__all__ = ["app", "main"]
