"""The ``spokenlm`` command: git-style subcommands, one per standalone pipeline step.

Each subcommand lives in its stage's module, which defines ``configure_parser(parser)`` and
``run(args) -> int | None``. Modules are imported only when their subcommand runs, and fairseq
(:func:`spokenlm_plugin.register`) only once the arguments parse, so ``--help`` and argument
errors stay fast. User errors (:class:`SpokenLMError`) print as one line.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Sequence

from . import register
from .core.errors import SpokenLMError
from .core.io import check_output_path

#: Options that name what a command writes (checked before it starts, so a long job cannot fail at
#: its end on an output path that was never writable).
OUTPUT_OPTIONS = ("out", "out_dir", "json", "results", "wav_dir", "work", "resample_to_dir", "encoder_out")

#: subcommand -> (module, one-line help). Order is the pipeline's order.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "synth-corpus": ("spokenlm_plugin.synth.corpus", "synthesize the embedded aligned speech corpus"),
    "synth-pairs": ("spokenlm_plugin.synth.minimal_pairs", "synthesize lexical / syntactic minimal pairs + gold.csv"),
    "synth-pretrain-corpus": ("spokenlm_plugin.synth.pretrain_corpus", "synthesize unlabelled pretraining speech (disjoint speakers and sentences)"),
    "manifest": ("spokenlm_plugin.data.manifest", "fairseq manifest (TSV) from a folder of audio"),
    "labels": ("spokenlm_plugin.data.labels", "50 Hz frame phone labels + dict.phn.txt from alignments"),
    "subset": ("spokenlm_plugin.data.subset", "speaker-balanced limited-supervision subset by duration"),
    "items": ("spokenlm_plugin.data.items", "ABX item file (triphone / phoneme) from alignments"),
    "pretrain-small": ("spokenlm_plugin.pretrain.hubert", "pretrain a small HuBERT on a synthetic corpus (fairseq hubert_pretraining)"),
    "convert-hubert": ("spokenlm_plugin.convert.hubert", "torchaudio / Hugging Face HuBERT weights -> fairseq checkpoint"),
    "dump-features": ("spokenlm_plugin.units.features", "dump HuBERT features of a layer to .npy/.len shards"),
    "kmeans": ("spokenlm_plugin.units.kmeans", "fit k-means (faiss) and assign units (.km)"),
    "abx": ("spokenlm_plugin.units.abx", "ABX error of features or units (fastabx)"),
    "unit-quality": ("spokenlm_plugin.units.quality", "phone purity, cluster purity and PNMI of units"),
    "baseline-features": ("spokenlm_plugin.units.baseline", "log-mel / MFCC / gold-phone one-hot features, dumped like dump-features"),
    "baseline-classifier": ("spokenlm_plugin.units.phone_classifier", "linear phone classifier on log-mel frames (+-2): frame accuracy, PER"),
    "phone-units": ("spokenlm_plugin.units.phone_units", "gold 50 Hz phone labels -> .km units (phoneme-LM topline)"),
    "lm-data": ("spokenlm_plugin.ulm.data", "units (.km) -> fairseq binarized LM dataset with a fixed dictionary"),
    "lm-score": ("spokenlm_plugin.ulm.score", "score utterances with a unit LM; sWUGGY / sBLIMP accuracy"),
    "lm-generate": ("spokenlm_plugin.ulm.generate", "continue unit prompts (.km) with fairseq-generate"),
    "vocoder-train": ("spokenlm_plugin.vocoder.train", "train a unit HiFi-GAN vocoder (fairseq CodeHiFiGAN format), resumable"),
    "vocoder-synth": ("spokenlm_plugin.vocoder.synth", "units (.km) -> 16 kHz wavs with a unit vocoder"),
    "vocoder-import": ("spokenlm_plugin.vocoder.hifigan_import", "import a unit-hifigan vocoder (safetensors) as a fairseq vocoder.pt + config.json"),
    "resynth-eval": ("spokenlm_plugin.vocoder.evaluate", "resynthesis metrics: MCD, F0 correlation, PER of resynthesised audio"),
    "sutlm-data": ("spokenlm_plugin.sutlm.data", "units + word alignments + text -> joint speech-unit / text LM subsets"),
    "sutlm-generate": ("spokenlm_plugin.sutlm.generate", "continue speech or text prompts in either modality (joint LM)"),
    "sutlm-eval": ("spokenlm_plugin.sutlm.evaluate", "CRA (u2u / u2t / t2u / t2t) and PELM of a joint LM"),
    "demo": ("spokenlm_plugin.demo.pipeline", "run the whole pipeline on the embedded synthetic corpus"),
}

#: Commands whose rerun continues where an interrupted run stopped (the others start over).
RESUMABLE = frozenset({"synth-corpus", "synth-pairs", "synth-pretrain-corpus", "manifest", "pretrain-small",
                       "dump-features", "baseline-features", "demo"})


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spokenlm",
        description="Spoken language modeling on phoneme-aware speech units (fairseq plugin).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    wanted = next((a for a in argv if not a.startswith("-")), None)
    for name, (module, help_) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        # Only the chosen subcommand's module is imported (fairseq and torch are slow to load).
        if name == wanted:
            mod = importlib.import_module(module)
            mod.configure_parser(p)
            p.set_defaults(_run=mod.run)
    return parser


def _quiet_fairseq() -> None:
    """fairseq logs every model config at INFO; a spokenlm command shows only its own progress."""
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    # hydra's config composition (inside fairseq) can leave the root logger at DEBUG.
    root.setLevel(logging.INFO)
    for name in ("fairseq", "fairseq_cli", "hydra", "matplotlib", "PIL"):
        logging.getLogger(name).setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    _quiet_fairseq()
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    try:
        for option in OUTPUT_OPTIONS:
            if getattr(args, option, None) is not None:
                check_output_path(getattr(args, option))
        register()
        code = args._run(args)
    except SpokenLMError as e:
        print(f"spokenlm {args.command}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        if e.filename is None:  # not about a file the user named: a bug, keep its traceback
            raise
        # A writer outside the project's atomic helpers (torch.save, soundfile, fairseq) refused a path.
        print(f"spokenlm {args.command}: error: {e.filename}: {e.strerror or e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        then = "rerun to resume" if args.command in RESUMABLE else "rerun to start it again"
        print(f"spokenlm {args.command}: interrupted (completed outputs are kept; {then})", file=sys.stderr)
        return 130
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
