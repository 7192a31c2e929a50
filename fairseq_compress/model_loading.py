"""The model of any checkpoint this plugin reads, as a plain fp32 eval-mode module: stock or plugin
archs, pruning-task checkpoints (masks folded; layers gated off refused: shrink removes them), compressed files (decoded by fairseq_hooks' loader)
and shrunk ones. The offline tools (iPQ, export) start from it."""
from .errors import ConfigError
from .modules.layer_gates import drop_gates
from .modules.weight_parametrizations import without_parametrizations


def load_model(path, data=None):
    """(model, task, cfg) of the fairseq checkpoint at `path`, compressed or not; `data`
    replaces the data directory it was trained on (for its dictionaries)."""
    from fairseq import checkpoint_utils  # with fairseq_hooks' loader: safe, compressed files decoded

    try:
        models, cfg, task = checkpoint_utils.load_model_ensemble_and_task(
            [str(path)], arg_overrides={"data": str(data)} if data else None)
    except FileNotFoundError as error:
        raise ConfigError(f"{path} was trained on data that is not here ({error}); pass --data DIR") from None
    drop_gates(models[0].state_dict(), str(path))  # a gated-off layer is still in the model: refused
    return without_parametrizations(models[0]).float().eval(), task, cfg

