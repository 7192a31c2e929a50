from . import compress_roberta, compress_transformer  # noqa: F401  (registration)
