from . import electra, quant_noise  # noqa: F401  (registration)
