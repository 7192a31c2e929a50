"""``fairseq-compress``: offline tools for checkpoints of fairseq models."""
import argparse
import json
import os
import sys

TIMED_VALIDATE = "timed-validate"


def _size(args):
    from .compress.size import checkpoint_size, format_size_report

    report = checkpoint_size(args.path)
    print(json.dumps(report) if args.json else format_size_report(report))


def _info(args):
    from .checkpoint_info import trained_as

    info = trained_as(args.path)
    print(json.dumps(info) if args.json else f"{info['task']} {info['arch']} {info['data']}")


def _check_out(args):
    if os.path.abspath(args.out) == os.path.abspath(args.path):
        raise ValueError(f"--out {args.out} would overwrite --path; choose another file")
    if os.path.exists(args.out) and not args.force:
        raise ValueError(f"--out {args.out} exists; pass --force to replace it")


def _report(args):
    from .compress.size import checkpoint_size

    before, after = checkpoint_size(args.path), checkpoint_size(args.out)
    dense_model_bytes = before["model_params"] * 4
    print(json.dumps({"out": args.out, "file_bytes": after["file_bytes"], "fp32_model_bytes": dense_model_bytes,
                      "ratio_vs_fp32_model": round(dense_model_bytes / after["file_bytes"], 2),
                      "ratio_vs_input_file": round(before["file_bytes"] / after["file_bytes"], 2)}))


def _ipq(args):
    from .compress.ipq import compress_checkpoint

    _check_out(args)
    if args.data and not os.path.isdir(args.data):
        raise ValueError(f"--data {args.data}: no such directory")
    compress_checkpoint(args.path, args.config, args.out, args.data, args.finetune_updates, args.lr, args.n_iter,
                        args.distill_temperature if args.distill else None, args.distill_weight)
    _report(args)


def _quantize(args):
    from .compress.post_training import prune_and_quantize

    _check_out(args)
    prune_and_quantize(args.path, args.out, bits=args.bits, exclude=args.exclude)
    _report(args)


def _prune(args):
    from .compress.post_training import prune_and_quantize

    _check_out(args)
    prune_and_quantize(args.path, args.out, bits=args.bits, sparsity=args.sparsity, scope=args.scope,
                      targets=args.targets)
    _report(args)


def _shrink(args):
    from .compress.shrink import shrink_checkpoint

    _check_out(args)
    shapes = shrink_checkpoint(args.path, args.out, args.heads_keep, args.ffn_keep, args.layers_keep)
    print(json.dumps({"out": args.out, "layer_shapes": shapes}))


def _export(args):
    from .deploy import write_directory

    _check_out(args)
    if args.format == "ctranslate2":
        from .deploy.to_ctranslate2 import VmapSize, export_ctranslate2

        if not args.data:
            raise ValueError("--format ctranslate2 needs --data DIR: the data-bin of the checkpoint (its "
                             "dict.*.txt and spm.model go with the model)")
        if args.part:
            raise ValueError("--part applies to --format transformers (ELECTRA checkpoints)")
        vmap = VmapSize(args.vmap_top_k, args.vmap_frequent) if args.vmap else None
        report = write_directory(args.out, lambda out: export_ctranslate2(args.path, args.data, out, args.quantization,
                                                                          vmap))
    else:
        from .deploy.to_transformers import export_transformers

        if args.quantization:
            raise ValueError("--quantization applies to --format ctranslate2; transformers models are written in fp32")
        if args.vmap:
            raise ValueError("--vmap applies to --format ctranslate2")
        report = write_directory(args.out, lambda out: export_transformers(args.path, out, args.part, args.data))
    print(json.dumps(report))


def _distill_data(args):
    from .compress.sequence_kd import distill_data

    print(json.dumps(distill_data(args.teacher, args.data, args.out, args.beam, args.batch_size, args.shard_size,
                                  args.max_len_a, args.max_len_b)))


def _plot(args):
    from .sweep_curves import plot_curves

    lines = plot_curves(args.sweep_dir, args.x, args.y, args.out)
    print(f"{args.out}: {len(lines)} lines: {'; '.join(lines)}")


def _summarize(args):
    from .sweep_curves import summarize

    summarize(args.sweep_dir, args.y, args.csv)


def _timed_validate(args):
    from .validation import timed_validate

    timed_validate(args.validate_args)


def _validation_summary(args):
    from .validation import summary

    print(json.dumps(summary(sys.stdin.read(), args.metric)))


def add_compress_command(commands, name, help, run):
    """A subcommand that reads --path and writes a compressed checkpoint to --out."""
    command = commands.add_parser(name, help=help)
    command.add_argument("--path", required=True, metavar="CKPT", help="dense fairseq checkpoint (.pt)")
    command.add_argument("--out", required=True, metavar="OUT.pt", help="compressed checkpoint to write")
    command.add_argument("--force", action="store_true", help="replace --out if it exists")
    command.set_defaults(run=run)
    return command


def build_parser():
    from .compress.magnitude_pruning import DEFAULT_TARGETS

    parser = argparse.ArgumentParser(prog="fairseq-compress", description=__doc__)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    size = commands.add_parser(
        "size", help="bytes of a checkpoint on disk and by component (embeddings, attention, FFN, other)"
    )
    size.add_argument("--path", required=True, metavar="CKPT", help="fairseq checkpoint (.pt)")
    size.add_argument("--json", action="store_true", help="print one JSON object")
    size.set_defaults(run=_size)
    info = commands.add_parser("info", help="what a checkpoint was trained as: TASK ARCH DATA (the stock task that "
                                            "a plugin task extends)")
    info.add_argument("--path", required=True, metavar="CKPT", help="fairseq checkpoint (.pt)")
    info.add_argument("--json", action="store_true", help="print one JSON object")
    info.set_defaults(run=_info)
    ipq = add_compress_command(
        commands, "ipq", "iterative product quantization of a checkpoint, stage by stage, into a small compressed "
                         "checkpoint", _ipq)
    ipq.add_argument("--config", required=True, metavar="YAML",
                     help="stages, block sizes and centroids in fairseq's --quantization-config-path format "
                          "(fairseq_compress/config/ipq/*.yaml)")
    ipq.add_argument("--data", metavar="DIR", help="data-bin of the checkpoint's task: fine-tune between stages "
                     "(and find the dictionary if the training data moved)")
    ipq.add_argument("--finetune-updates", type=int, default=100, help="updates per stage when --data is given")
    ipq.add_argument("--lr", type=float, default=1e-4, help="fixed learning rate of that fine-tuning")
    ipq.add_argument("--n-iter", type=int, default=15, help="k-means iterations per layer")
    ipq.add_argument("--distill", action="store_true",
                     help="fine-tune between stages with the KL divergence to the uncompressed model's outputs too")
    ipq.add_argument("--distill-temperature", type=float, default=2.0, metavar="T", help="softmax temperature")
    ipq.add_argument("--distill-weight", type=float, default=0.5, metavar="W",
                     help="loss = (1 - W) task loss + W T^2 KL")
    quantize = add_compress_command(
        commands, "quantize", "symmetric per-output-channel scalar quantization of every weight matrix (int8, int4 "
                              "packed two per byte, ...) into a compressed checkpoint", _quantize)
    quantize.add_argument("--bits", required=True, type=int, help="bits per weight, 2 to 8 (8 and 4 are the usual)")
    quantize.add_argument("--exclude", metavar="REGEX", help="keep matrices whose name matches in fp16")
    prune = add_compress_command(
        commands, "prune", "one-shot magnitude pruning of the Linear weights inside the layers, stored sparsely "
                           "(bitmask + nonzeros), optionally quantized", _prune)
    prune.add_argument("--sparsity", required=True, type=float, help="fraction of zeros in the targets, in [0, 1)")
    prune.add_argument("--scope", choices=("global", "layer"), default="global",
                       help="one magnitude threshold over all targets, or one per matrix")
    prune.add_argument("--targets", default=DEFAULT_TARGETS, metavar="REGEX",
                       help="weight matrices to prune (default: those inside encoder/decoder layers)")
    prune.add_argument("--bits", type=int, help="also quantize every weight matrix to this many bits (2 to 8)")
    shrink = add_compress_command(
        commands, "shrink", "remove attention heads, FFN neurons and layers for real: a smaller, faster dense "
                            "checkpoint that the stock fairseq tools load (with --user-dir fairseq_compress)", _shrink)
    shrink.add_argument("--heads-keep", type=float, default=1.0, metavar="F",
                        help="fraction of each attention module's heads to keep, in (0, 1] (at least one)")
    shrink.add_argument("--ffn-keep", type=float, default=1.0, metavar="F",
                        help="fraction of each layer's FFN neurons to keep, in (0, 1]")
    shrink.add_argument("--layers-keep", metavar="I,J,...", help="indices of the layers to keep in every stack "
                        "(encoder and decoder), e.g. 0,2,4; default all")
    export = commands.add_parser(
        "export", help="a checkpoint (dense, pruned, quantized, iPQ or shrunk) as a model directory of the runtime "
                       "it is served with: CTranslate2 (translation) or Hugging Face transformers (RoBERTa, ELECTRA)")
    export.add_argument("--format", required=True, choices=("ctranslate2", "transformers"))
    export.add_argument("--path", required=True, metavar="CKPT", help="fairseq checkpoint (.pt)")
    export.add_argument("--out", required=True, metavar="DIR", help="model directory to write")
    export.add_argument("--data", metavar="DIR", help="the checkpoint's data-bin (dictionaries, spm.model); required "
                        "for ctranslate2, default for transformers: the one it was trained on")
    export.add_argument("--quantization", metavar="TYPE", help="ctranslate2 weights: int8, int8_float32, "
                        "int8_float16, float16 or float32 (default: as trained, float32)")
    export.add_argument("--vmap", action="store_true", help="ctranslate2: add a vocabulary map built from --data's "
                        "training split (translate with use_vmap=True, or scripts/eval_bleu.sh --vmap)")
    export.add_argument("--vmap-top-k", type=int, default=20, metavar="K", help="target pieces per source piece")
    export.add_argument("--vmap-frequent", type=int, default=100, metavar="N",
                        help="most frequent target pieces, allowed in every batch")
    export.add_argument("--part", metavar="PART", help="ELECTRA: discriminator (default; ElectraForPreTraining) or "
                        "generator (ElectraForMaskedLM)")
    export.add_argument("--force", action="store_true", help="replace --out if it exists")
    export.set_defaults(run=_export)
    kd_data = commands.add_parser(
        "distill-data", help="sequence-level knowledge distillation data: the training split translated by a teacher, "
                             "as a data-bin with the original dictionaries, valid and test splits")
    kd_data.add_argument("--teacher", required=True, metavar="CKPT_OR_CT2_DIR",
                         help="the teacher: a translation checkpoint, or its CTranslate2 export (faster)")
    kd_data.add_argument("--data", required=True, metavar="DIR", help="the data-bin to distill (scripts/prepare_mt.sh)")
    kd_data.add_argument("--out", required=True, metavar="DIR", help="the new data-bin (a killed run resumes from "
                                                                     "DIR.partial)")
    kd_data.add_argument("--beam", type=int, default=5)
    kd_data.add_argument("--batch-size", type=int, default=64, help="sentences per batch")
    kd_data.add_argument("--shard-size", type=int, default=1000, help="sentences per resumable shard")
    kd_data.add_argument("--max-len-a", type=float, default=1.5, help="translations are capped at A x source + B")
    kd_data.add_argument("--max-len-b", type=int, default=10)
    kd_data.set_defaults(run=_distill_data)
    plot = commands.add_parser("plot", help="learning curves of a size sweep (SWEEP_DIR/<run>/curve.jsonl), one "
                                            "line per run")
    plot.add_argument("sweep_dir", metavar="SWEEP_DIR", help="directory of runs trained with --task *_timed")
    plot.add_argument("--x", choices=("wall", "updates", "flops"), default="wall",
                      help="training time (validation excluded), updates or FLOPs")
    plot.add_argument("--y", choices=("ppl", "bleu", "loss"), default="ppl")
    plot.add_argument("--out", required=True, metavar="PNG")
    plot.set_defaults(run=_plot)
    summary = commands.add_parser("summarize", help="a size sweep as a table: per run its size, speed, final and "
                                                    "best metric, and when it overtakes each smaller run")
    summary.add_argument("sweep_dir", metavar="SWEEP_DIR", help="directory of runs trained with --task *_timed")
    summary.add_argument("--y", choices=("ppl", "bleu", "loss"), default="ppl")
    summary.add_argument("--csv", metavar="CSV", help="also write the table here")
    summary.set_defaults(run=_summarize)
    # Listed here for --help only: main() hands every argument after it to fairseq-validate, unparsed.
    commands.add_parser(TIMED_VALIDATE, help="the stock fairseq-validate, the same arguments, with its forward "
                                             "passes timed: a last 'timed' record (sentences/s)")
    validation = commands.add_parser("validation-summary", help="one metric of a fairseq-validate log (--log-format "
                                     "json) on stdin as JSON: test (dev without a test subset) and dev values, and "
                                     "the speed of a timed-validate log")
    validation.add_argument("--metric", default="accuracy", help="a key of the subsets' records")
    validation.set_defaults(run=_validation_summary)
    return parser


def main(argv=None):
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    if argv[:1] == [TIMED_VALIDATE]:  # every further argument is fairseq-validate's, --help and options first too
        args = argparse.Namespace(command=TIMED_VALIDATE, validate_args=argv[1:], run=_timed_validate)
    else:
        args = build_parser().parse_args(argv)
    if hasattr(args, "path") and not os.path.isfile(args.path):
        sys.exit(f"fairseq-compress {args.command}: error: --path {args.path}: no such file")
    for flag in ("config",):
        if hasattr(args, flag) and not os.path.isfile(getattr(args, flag)):
            sys.exit(f"fairseq-compress {args.command}: error: --{flag} {getattr(args, flag)}: no such file")
    try:
        args.run(args)
    except (ValueError, OSError) as error:
        sys.exit(f"fairseq-compress {args.command}: error: {error}")


if __name__ == "__main__":
    main()
