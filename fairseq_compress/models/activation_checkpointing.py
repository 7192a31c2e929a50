"""``--checkpoint-activations`` / ``--offload-activations`` for the RoBERTa-family
models. fairseq 0.12's ``TransformerEncoder`` wraps its layers in
``checkpoint_wrapper`` when the model config asks for it, but ``RobertaModel``
registers neither flag, so a BERT-style run could not trade compute for memory."""


class ActivationCheckpointingMixin:
    @classmethod
    def add_args(cls, parser):
        super().add_args(parser)
        group = parser.add_argument_group("Activation checkpointing")
        group.add_argument("--checkpoint-activations", action="store_true",
                           help="recompute each layer's activations in backward instead of storing them")
        group.add_argument("--offload-activations", action="store_true",
                           help="also move the stored layer inputs to CPU (implies --checkpoint-activations)")
