"""Export a checkpoint as one TensorFlow SavedModel that answers every task it holds, loadable by
tf.saved_model.load or TensorFlow Serving without this project's code.

    python export.py --stage=ret_t6 --export_dir=Data/Export/conure/1 [--out_dir=Data --tasks=1-6 --k=10]

Keras 3's ExportArchive writes one signature per task, named as in tasks.py (next_item, clicks,
likes, gender, age, life_status). Each takes one input, `tokens`: a string tensor [batch, length]
of users' item tokens, oldest first, left-padded with "0" (predict.py's --length, 100 by default,
gives the same answers). The vocabulary lookup is in the graph; unknown tokens map to <unk>.
Outputs:
  item tasks:           items [batch, k] string, scores [batch, k] float32
  classification tasks: probabilities [batch, classes] float32 (softmax over the class scores),
                        classes [batch, classes] string (the label of each column), label [batch] string
  every task:           unknown_tokens [batch] int32
The export runs on the TensorFlow backend whatever KERAS_BACKEND says: weights.npz is backend-
neutral, so checkpoints trained with KERAS_BACKEND=jax export too.
"""
import os

if __name__ == "__main__":
    os.environ["KERAS_BACKEND"] = "tensorflow"  # a SavedModel is a TensorFlow graph

import argparse  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import checkpoint  # noqa: E402
import data_loader  # noqa: E402
import methods  # noqa: E402
import paths  # noqa: E402
import predict  # noqa: E402
import settings  # noqa: E402
import trainer  # noqa: E402
import keras  # noqa: E402


def export(served, export_dir, k=predict.K):
    """Write `served` (predict.load) to `export_dir` as a SavedModel; returns its manifest."""
    if trainer.backend() != "tensorflow":
        raise settings.ConfigError("a SavedModel needs the TensorFlow backend: run python export.py, which uses it")
    import tensorflow as tf

    # "0" -> PAD, unknown -> UNK, items from 2; the T1 vocabulary keeps 2 for SEP, its items start at 3.
    lookup = keras.layers.StringLookup(vocabulary=served.vocab.items, mask_token=data_loader.PAD_TOKEN,
                                       num_oov_indices=1)
    lookup.build((None, None))
    archive = keras.export.ExportArchive()
    archive.track(lookup)  # its table; the model's variables are tracked through the endpoints

    def encode(tokens):
        index = tf.cast(lookup(tokens), tf.int32)
        return tf.where(index > data_loader.UNK, index + 1, index)

    def endpoint(number, kind):
        answers = tf.constant(served.answer_tokens(number))
        depth = min(k, served.n_answers(number)) if kind != "class" else None

        def answer(tokens):
            ids = encode(tokens)
            values, index = predict.task_outputs(served.model, ids, number, kind, served.view, depth)
            outputs = {"unknown_tokens": tf.reduce_sum(tf.cast(ids == data_loader.UNK, tf.int32), axis=1)}
            if kind != "class":
                return {**outputs, "items": tf.gather(answers, index), "scores": values}
            classes = tf.tile(answers[None, :], [tf.shape(tokens)[0], 1])
            return {**outputs, "probabilities": values, "classes": classes, "label": tf.gather(answers, index)}

        return answer

    signatures = {}
    for number, name, kind in served.tasks:
        archive.add_endpoint(name, endpoint(number, kind),
                             input_signature=[tf.TensorSpec([None, None], tf.string, name="tokens")])
        outputs = ["probabilities", "classes", "label"] if kind == "class" else ["items", "scores"]
        signatures[name] = {"task": number, "kind": kind, "outputs": outputs + ["unknown_tokens"]}
    manifest = {"stage": served.stage, "k": k, "signatures": signatures, "input": "tokens: string [batch, length]"}
    checkpoint.write(Path(export_dir), lambda directory: archive.write_out(str(directory), verbose=False), manifest)
    return manifest


def size_bytes(directory):
    return sum(p.stat().st_size for p in Path(directory).rglob("*") if p.is_file())


def build_parser():
    """The command line this script accepts (tests/test_docs.py checks the docs against it)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage", required=True, help="checkpoint stage, e.g. ret_t6 or finall_t3")
    parser.add_argument("--export_dir", required=True,
                        help="SavedModel folder to write (replaces an earlier export, nothing else); a new "
                             "folder named like a file (.zip, .keras, ...) is refused")
    parser.add_argument("--tasks", help="tasks to export, e.g. 1-6 or 1,4 (default: every task the checkpoint "
                                        "answers for)")
    parser.add_argument("--k", type=int, default=predict.K, help=f"items per item task (default {predict.K})")
    parser.add_argument("--out_dir", default=settings.DEFAULTS["out_dir"], help="folder holding Models/")
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.k < 1:
            raise settings.ConfigError(f"--k={args.k}: must be an integer >= 1")
        numbers = predict.parse_task_list(args.tasks) if args.tasks else None
        methods.parse_stage(args.stage)
        paths.replaceable(args.export_dir, "--export_dir", "an export", paths.manifest_folder("signatures"))
        paths.output_dir(args.export_dir, "--export_dir")  # a folder: a new one is not named like a file
        served = predict.load(Path(args.out_dir) / "Models" / args.stage, numbers)
        manifest = export(served, args.export_dir, args.k)
    except (settings.ConfigError, paths.PathError, data_loader.DataError, checkpoint.CheckpointError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    print(f"{args.stage}: signatures {', '.join(manifest['signatures'])} (k={args.k}) in {args.export_dir}, "
          f"{size_bytes(args.export_dir) / 2**20:,.1f} MiB")
    return manifest


if __name__ == "__main__":
    main()
