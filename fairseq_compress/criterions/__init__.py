# Registration, in this order: a wrapping criterion merges the options of those it wraps.
from . import electra, quant_noise, distillation  # noqa: F401,I001
