from . import pruning  # noqa: F401  (registers the *_pruning tasks)
