"""Stock fairseq tasks plus a mixin, registered under a new name: the task
classes and dataclass configs fairseq needs, built from one mixin and one
options dataclass, so one implementation serves every stock task it extends."""
from dataclasses import dataclass

from fairseq.tasks import register_task


def register_mixin_task(name, mixin, options, task_class, config_class):
    """Register ``name``: ``task_class`` with ``mixin`` first in its MRO and
    ``options``' flags added to ``config_class``."""
    base = task_class.__name__[:-len("Task")]
    suffix = mixin.__name__[:-len("Mixin")]
    config = dataclass(type(f"{base}{suffix}Config", (options, config_class), {}))
    task = type(f"{base}{suffix}Task", (mixin, task_class), {"__doc__": mixin.__doc__})
    return register_task(name, dataclass=config)(task)
