from . import electra  # noqa: F401  (registration)
