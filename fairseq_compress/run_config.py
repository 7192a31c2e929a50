"""Settings of the whole run, read from the config of one component.

A model or criterion is built from its own config: in argparse runs that is a
namespace holding every flag; in fairseq-hydra-train runs it is one section of
the root config, and settings such as --max-update live in other sections.
"""
from fairseq.utils import safe_getattr
from omegaconf import OmegaConf


def run_setting(cfg, key, section, default=None):
    """cfg.key, else root_config.section.key (hydra runs), else default."""
    value = safe_getattr(cfg, key, None)
    if value is None and OmegaConf.is_config(cfg):
        value = safe_getattr(cfg._get_root().get(section), key, None)
    return default if value is None else value
