"""The model-size grid of the "Train Large, Then Compress" sweeps.

Every plugin family registers one arch per (depth, width) pair, e.g.
``transformer_l6_h512``: L layers, width H, H/64 heads, FFN 4H.
"""
DEPTHS = (2, 3, 6, 12, 18, 24)
WIDTHS = (128, 256, 512, 768, 1024)
HEAD_DIM = 64
FFN_RATIO = 4


def size_grid():
    return [(layers, width) for layers in DEPTHS for width in WIDTHS]


def sized_arch_name(family, layers, width):
    return f"{family}_l{layers}_h{width}"


def heads_for(width):
    return width // HEAD_DIM


def register_sized_archs(model_name, family, set_size, base_architecture):
    """Register ``{family}_l{L}_h{H}`` for the whole grid on ``model_name``.

    ``set_size(args, layers, width)`` fills the size fields a user did not set
    on the command line; ``base_architecture`` then fills everything else.
    """
    from fairseq.models import register_model_architecture

    for layers, width in size_grid():

        def arch(args, layers=layers, width=width):
            set_size(args, layers, width)
            base_architecture(args)

        register_model_architecture(model_name, sized_arch_name(family, layers, width))(arch)
