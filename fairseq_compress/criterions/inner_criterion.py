"""Criteria that wrap another one (``quant_noise``, ``distillation``): their config is their own
options plus every allowed inner criterion's, so the inner criterion's flags (``--label-smoothing``
& co.) parse as usual, and the wrapper is built as a subclass named after the inner one, because
fairseq reduces metrics per criterion *class* (``reduce_metrics`` is a classmethod)."""
import dataclasses
from dataclasses import field

from fairseq.criterions import CRITERION_DATACLASS_REGISTRY, CRITERION_REGISTRY
from fairseq.dataclass import FairseqDataclass

from ..errors import ConfigError


def with_inner_options(name, options_class, inner_criteria):
    """The dataclass `name`: `options_class`'s fields plus those of every criterion in `inner_criteria`
    (the wrapper's own field wins a name clash)."""
    fields = {f.name: f for f in dataclasses.fields(options_class)}
    for inner in inner_criteria:
        for f in dataclasses.fields(CRITERION_DATACLASS_REGISTRY[inner]):
            fields.setdefault(f.name, f)
    specs = []
    for f in fields.values():
        default = {"default_factory": f.default_factory} if f.default is dataclasses.MISSING else {"default": f.default}
        specs.append((f.name, f.type, field(metadata=f.metadata, **default)))
    return dataclasses.make_dataclass(name, specs, bases=(FairseqDataclass,))


def chosen_inner_class(flag, name, allowed):
    """The registered criterion class `name` chosen by `flag`, refused unless in `allowed`."""
    if name not in allowed or name not in CRITERION_REGISTRY:
        raise ConfigError(f"{flag} must be one of {', '.join(allowed)}, got {name}")
    return CRITERION_REGISTRY[name]


def subclass_for(wrapper_class, inner):
    """`wrapper_class` specialised to the class of `inner` (a criterion class)."""
    return type(f"{wrapper_class.__name__.removesuffix('Criterion')}{inner.__name__}", (wrapper_class,),
                {"inner_class": inner})
