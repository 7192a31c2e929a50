"""The model-size grids: the "Train Large, Then Compress" sweeps and the distillation students.

Every plugin family registers one arch per (depth, width) pair, e.g.
``transformer_l6_h512``: L layers, width H, H/64 heads, FFN 4H. Translation
students have a deep encoder and a shallow decoder (Kasai et al. 2021: the
decoder's depth costs decoding time, the encoder's barely does), e.g.
``transformer_e6d1_h256``: 6 encoder layers, 1 decoder layer, width 256.
"""
DEPTHS = (2, 3, 6, 12, 18, 24)
WIDTHS = (128, 256, 512, 768, 1024)
STUDENT_ENCODER_DEPTHS = (3, 6, 12)
STUDENT_DECODER_DEPTHS = (1, 2)
HEAD_DIM = 64
FFN_RATIO = 4


def size_grid():
    return [(layers, width) for layers in DEPTHS for width in WIDTHS]


def student_grid():
    return [(encoder, decoder, width) for encoder in STUDENT_ENCODER_DEPTHS for decoder in STUDENT_DECODER_DEPTHS
            for width in WIDTHS]


def sized_arch_name(family, layers, width):
    return f"{family}_l{layers}_h{width}"


def student_arch_name(encoder_layers, decoder_layers, width):
    return f"transformer_e{encoder_layers}d{decoder_layers}_h{width}"


def heads_for(width):
    return width // HEAD_DIM


def register_shaped_archs(model_name, names_and_shapes, set_shape, base_architecture):
    """Register each (name, shape) on ``model_name``: ``set_shape(args, *shape)`` fills the size
    fields a user did not set on the command line; ``base_architecture`` then fills everything else."""
    from fairseq.models import register_model_architecture

    for name, shape in names_and_shapes:

        def arch(args, shape=shape):
            set_shape(args, *shape)
            base_architecture(args)

        register_model_architecture(model_name, name)(arch)


def register_sized_archs(model_name, family, set_size, base_architecture):
    """``{family}_l{L}_h{H}`` for the whole size grid; ``set_size(args, layers, width)``."""
    register_shaped_archs(model_name, [(sized_arch_name(family, *shape), shape) for shape in size_grid()],
                          set_size, base_architecture)


def register_student_archs(model_name, set_shape, base_architecture):
    """``transformer_e{E}d{D}_h{H}`` for the student grid; ``set_shape(args, encoder_layers, decoder_layers, width)``."""
    register_shaped_archs(model_name, [(student_arch_name(*shape), shape) for shape in student_grid()],
                          set_shape, base_architecture)
