from . import pruning, timed  # noqa: F401  (registers the *_pruning and *_timed tasks)
