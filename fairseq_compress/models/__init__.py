from . import compress_roberta, compress_transformer, electra  # noqa: F401  (registration)
