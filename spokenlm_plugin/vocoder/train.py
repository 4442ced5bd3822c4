"""``spokenlm vocoder-train``: train a code HiFi-GAN on (audio, units), resumably.

Every ``--checkpoint-every`` steps (and at the end) the run writes ``OUT/train_state.pt`` (both
networks with their optimisers, schedulers, random states, loss history and a fingerprint of the
options and of the training data), atomically; rerunning the same command resumes from it and ends
with exactly the weights of an uninterrupted run, and a rerun with other options or data is refused.
Only a finished run writes ``OUT/vocoder.pt`` + ``OUT/config.json`` (fairseq-loadable, see
:mod:`.checkpoint`): an interrupted run leaves no vocoder that looks finished. Validation writes
``OUT/valid/step<N>/`` wavs and mel plots.

:func:`train_vocoder` also trains several unit sets of one corpus together (the demo's base /
fine-tuned / logits units): one shared generator body, one embedding table per set (see
:class:`.model.SharedGenerators`); each set is written to ``OUT/<name>/vocoder.pt``.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Literal, Sequence

import numpy as np

from ..core.checkpoints import read_checkpoint
from ..core.errors import ConfigError
from ..core.io import atomic_path, atomic_write, read_manifest
from ..core.km import deduplicate
from ..core.phones import HOP
from ..core.runtime import positive_int, torch_threads
from .config import TRAIN_STATE, DiscriminatorConfig, GeneratorConfig, TrainConfig

if TYPE_CHECKING:  # imported where used: `spokenlm <command> --help` must not wait seconds for torch
    import torch
    from .data import UnitSet, VocoderCorpus
    from .losses import LogMel
    from .model import Discriminators, SharedGenerators

STATE = TRAIN_STATE
#: Validation utterances synthesised per unit set at each validation.
VALID_UTTERANCES = 3


def _speakers(manifest: Path) -> list[str]:
    from ..data.speakers import speaker_of

    m = read_manifest(manifest)
    return [speaker_of(row, "auto", where=f"{manifest}:{i}") for i, row in enumerate(m.rows, start=2)]


def _dedup(units: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    import torch

    values, counts = torch.unique_consecutive(units, return_counts=True)
    return values, counts


def _duration_loss(g: SharedGenerators, code: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """MSE of the predicted log(run length + 1) of each segment's deduplicated units (speech-resynthesis)."""
    import torch

    losses = []
    for c, t in zip(code, table.tolist()):
        values, counts = _dedup(c)
        pred = g.body.dur_predictor(g.tables[t](values)[None])[0]
        losses.append(torch.nn.functional.mse_loss(pred, torch.log(counts.float() + 1)))
    return torch.stack(losses).mean()


def log_duration_prior(rows: Iterable[Sequence[int] | np.ndarray]) -> tuple[float, float]:
    """Mean and variance of log(run length + 1) over the runs of repeated units in ``rows``: the
    constant prediction the duration predictor starts from, and that constant's MSE (the baseline its
    loss is read against)."""
    logs = np.log1p(np.concatenate([np.asarray(deduplicate(list(map(int, r)))[1], dtype=np.float64) for r in rows]))
    return float(logs.mean()), float(logs.var())


def _fingerprint(gen_cfgs: Sequence[GeneratorConfig], names: Sequence[str], cfg: TrainConfig) -> dict[str, Any]:
    """What must not change between a run and its resumption (steps and intervals may)."""
    train = {k: v for k, v in asdict(cfg).items() if k not in ("steps", "checkpoint_every", "valid_every")}
    return json.loads(json.dumps({"generators": [c.to_fairseq() for c in gen_cfgs], "names": list(names),
                                  "train": train}))


def _check_resumable(state: dict[str, Any], state_path: Path, *, out: Path, fingerprint: dict[str, Any],
                     data: dict[str, str], corpus: VocoderCorpus, unit_sets: Sequence[UnitSet]) -> None:
    """Refuse to resume a run made with other options or on other data (one line: what changed)."""
    fix = f"use another --out or delete {out} to start afresh"
    if state.get("fingerprint") != fingerprint:
        raise ConfigError(f"{state_path}: a run with other options lives in {out}; {fix}, or pass the same options")
    saved = state.get("data")
    if not isinstance(saved, dict):
        raise ConfigError(f"{state_path}: this training state records no fingerprint of its data (an older "
                          f"version wrote it), so resuming it on {corpus.manifest} cannot be checked; {fix}")
    changed = []
    if saved.get("audio") != data["audio"]:
        changed.append(f"the audio of {corpus.manifest}")
    changed += [f"the units {s.km}" for s in unit_sets if saved.get(f"units:{s.name}") != data[f"units:{s.name}"]]
    if saved.get("speakers") != data.get("speakers"):
        changed.append(f"the speakers of {corpus.manifest}")
    if changed:
        raise ConfigError(f"{state_path}: the run in {out} was trained on other data ({', '.join(changed)} "
                          f"changed since); {fix}")


def output_paths(out: Path, names: Sequence[str]) -> dict[str, tuple[Path, Path]]:
    """name -> (vocoder.pt, config.json): ``OUT/`` for one unit set, ``OUT/<name>/`` for several."""
    if len(names) == 1:
        return {names[0]: (out / "vocoder.pt", out / "config.json")}
    return {n: (out / n / "vocoder.pt", out / n / "config.json") for n in names}


#: Entries of ``train_state.pt`` that are a ``state_dict()`` of the :class:`TrainState` field of that name.
_STATE_DICTS = ("generator", "discriminators", "opt_g", "opt_d", "sched_g", "sched_d")


@dataclass
class TrainState:
    """What a run resumes from: both networks with their optimisers and schedulers, the segment
    sampler, the step and the loss history (``OUT/train_state.pt`` holds them under these names,
    with torch's random state and the run's fingerprints)."""

    generator: SharedGenerators
    discriminators: Discriminators
    opt_g: torch.optim.AdamW
    opt_d: torch.optim.AdamW
    sched_g: torch.optim.lr_scheduler.ExponentialLR
    sched_d: torch.optim.lr_scheduler.ExponentialLR
    sampler: torch.Generator
    step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)

    def save(self, path: Path, *, fingerprint: dict[str, Any], data: dict[str, str]) -> None:
        """Write the state to ``path`` atomically, with torch's random state and the fingerprints of the
        run's options and data."""
        import torch

        with atomic_path(path) as tmp:
            torch.save({"fingerprint": fingerprint, "data": data, "step": self.step,
                        **{k: getattr(self, k).state_dict() for k in _STATE_DICTS},
                        "sampler": self.sampler.get_state(), "torch_rng": torch.get_rng_state(),
                        "history": self.history}, tmp)

    def load(self, state: dict[str, Any]) -> None:
        """Continue from a state :meth:`save` wrote (torch's random state included)."""
        import torch

        for k in _STATE_DICTS:
            getattr(self, k).load_state_dict(state[k])
        self.sampler.set_state(state["sampler"])
        torch.set_rng_state(state["torch_rng"])
        self.step, self.history = int(state["step"]), list(state["history"])


@dataclass(frozen=True)
class _Run:
    """Where a run writes, and what its training state records about its options and data."""

    out: Path
    gen_cfgs: Sequence[GeneratorConfig]
    paths: dict[str, tuple[Path, Path]]
    fingerprint: dict[str, Any]
    data: dict[str, str]

    def checkpoint(self, state: TrainState, *, finished: bool) -> None:
        """The training state and log; with ``finished`` also every unit set's vocoder."""
        from .checkpoint import save_vocoder

        # The state first: a run killed between the two files resumes at the end and writes the vocoders.
        state.save(self.out / STATE, fingerprint=self.fingerprint, data=self.data)
        with atomic_write(self.out / "train_log.json") as f:
            json.dump({"step": state.step, "history": state.history}, f, indent=0)
        if finished:
            for i, (checkpoint, config) in enumerate(self.paths.values()):
                save_vocoder(state.generator.export(i), self.gen_cfgs[i], checkpoint=checkpoint, config=config)


def train_vocoder(
    manifest: str | Path,
    unit_sets: Sequence[UnitSet],
    out: str | Path,
    *,
    train: TrainConfig,
    channels: int = 128,
    embedding_dim: int = 128,
    multispeaker: bool = False,
    duration_predictor: bool = False,
    valid_manifest: str | Path | None = None,
    valid_units: dict[str, Path] | None = None,
    downmix: bool = False,
    on_change: Literal["refuse", "restart"] = "refuse",
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train (or resume) to ``train.steps``; return the loss history and the output paths.

    ``OUT/vocoder.pt`` (per unit set) exists only once training reached ``train.steps``. A state in
    ``out`` from other options or data is refused, or with ``on_change="restart"`` (a pipeline that
    owns ``out``) discarded: training starts afresh."""
    out = Path(out)
    names = [s.name for s in unit_sets]
    corpus, valid, speaker_names = _corpora(manifest, unit_sets, names=names, train=train, multispeaker=multispeaker,
                                            valid_manifest=valid_manifest, valid_units=valid_units, downmix=downmix)
    gen_cfgs = [GeneratorConfig(num_embeddings=s.num_units, upsample_initial_channel=channels,
                                embedding_dim=embedding_dim, multispkr=multispeaker, num_speakers=len(speaker_names),
                                speakers=tuple(speaker_names), duration_predictor=duration_predictor)
                for s in unit_sets]
    state, mel, duration_baseline = _initial_state(gen_cfgs, corpus, train=train,
                                                   duration_predictor=duration_predictor)
    run = _Run(out=out, gen_cfgs=gen_cfgs, paths=output_paths(out, names),
               fingerprint=_fingerprint(gen_cfgs, names, train), data=corpus.fingerprint())
    _resume(state, run=run, corpus=corpus, unit_sets=unit_sets, on_change=on_change, log=log)
    if state.step < train.steps:
        # A finished vocoder of a shorter run would outlive this one if it is interrupted: vocoder.pt
        # must only ever hold a finished run's weights.
        for p in [p for pair in run.paths.values() for p in pair if p.is_file()]:
            p.unlink()
            log(f"[vocoder-train] removed {p} (from {state.step} steps; written again at {train.steps})")
    speaker_index = {s: i for i, s in enumerate(speaker_names)} if multispeaker else None
    steps_this_run, seconds = _train_steps(state, run=run, corpus=corpus, valid=valid, train=train, mel=mel,
                                           speaker_index=speaker_index, duration_predictor=duration_predictor,
                                           progress=progress)
    return {"steps": state.step, "steps_this_run": steps_this_run, "seconds": seconds,
            "steps_per_second": steps_this_run / seconds if seconds and steps_this_run else None,
            "history": state.history, "duration_baseline_mse": duration_baseline,
            "outputs": {n: {"checkpoint": c, "config": j} for n, (c, j) in run.paths.items()}}


def _corpora(manifest: str | Path, unit_sets: Sequence[UnitSet], *, names: Sequence[str], train: TrainConfig,
             multispeaker: bool, valid_manifest: str | Path | None, valid_units: dict[str, Path] | None,
             downmix: bool) -> tuple[VocoderCorpus, VocoderCorpus | None, list[str]]:
    """The training corpus, the validation corpus (if any) and the sorted speaker names (none without
    ``multispeaker``), checked against the options."""
    from .data import UnitSet, VocoderCorpus

    if len(set(names)) != len(names):
        raise ConfigError(f"unit set names must differ: {names}")
    speakers = _speakers(Path(manifest)) if multispeaker else None
    corpus = VocoderCorpus(manifest, unit_sets, speakers=speakers, downmix=downmix)
    longest = max(len(wav) for wav in corpus.audio) // HOP
    if train.segment_units > longest:  # every segment would be mostly padding (and memory grows with it)
        raise ConfigError(f"--segment-units {train.segment_units}: longer than every utterance of {manifest} "
                          f"(the longest has {longest} units); use at most {longest}")
    speaker_names = sorted(set(speakers)) if speakers else []
    valid = None
    if valid_manifest is not None:
        if not valid_units or set(valid_units) != set(names):
            raise ConfigError(f"--valid-manifest needs the validation units of every unit set {names}")
        valid = VocoderCorpus(valid_manifest, [UnitSet(n, valid_units[n], s.num_units) for n, s in
                                               zip(names, unit_sets)],
                              speakers=_speakers(Path(valid_manifest)) if multispeaker else None, downmix=downmix)
    return corpus, valid, speaker_names


def _initial_state(gen_cfgs: list[GeneratorConfig], corpus: VocoderCorpus, *, train: TrainConfig,
                   duration_predictor: bool) -> tuple[TrainState, LogMel, float | None]:
    """The networks, optimisers and sampler of step 0 (seeded), the mel transform, and the duration
    predictor's baseline MSE (None without one)."""
    import torch
    from .losses import LogMel
    from .model import Discriminators, SharedGenerators

    torch.manual_seed(train.seed)
    gen = SharedGenerators(gen_cfgs)
    duration_baseline = None
    if duration_predictor:
        # Start at the constant predictor (the data's mean log duration): from fairseq's random
        # projection the first few hundred steps only learn that constant (MSE 2.3 -> 0.4 in the demo,
        # while the constant alone scores ~0.13). A zero weight still gets gradients, then the layers below.
        prior, duration_baseline = log_duration_prior(r for rows in corpus.units.values() for r in rows)
        with torch.no_grad():
            gen.body.dur_predictor.proj.weight.zero_()
            gen.body.dur_predictor.proj.bias.fill_(prior)
    disc = Discriminators(train.discriminator)
    mel = LogMel()
    opt_g = torch.optim.AdamW(gen.parameters(), train.lr, betas=train.betas)
    opt_d = torch.optim.AdamW(disc.parameters(), train.lr, betas=train.betas)
    state = TrainState(generator=gen, discriminators=disc, opt_g=opt_g, opt_d=opt_d,
                       sched_g=torch.optim.lr_scheduler.ExponentialLR(opt_g, train.lr_decay),
                       sched_d=torch.optim.lr_scheduler.ExponentialLR(opt_d, train.lr_decay),
                       sampler=torch.Generator().manual_seed(train.seed))
    return state, mel, duration_baseline


def _resume(state: TrainState, *, run: _Run, corpus: VocoderCorpus, unit_sets: Sequence[UnitSet],
            on_change: Literal["refuse", "restart"], log: Callable[[str], None]) -> None:
    """Continue from ``OUT/train_state.pt`` when it holds a run of the same options and data; one of
    others is refused, or with ``on_change="restart"`` removed (training starts afresh)."""
    state_path = run.out / STATE
    if not state_path.is_file():
        return
    # A foreign or damaged file is refused, never overwritten silently.
    saved = read_checkpoint(state_path, hint="remove it to start afresh", what="vocoder training state",
                            loader="pickle", required=())
    try:
        _check_resumable(saved, state_path, out=run.out, fingerprint=run.fingerprint, data=run.data, corpus=corpus,
                         unit_sets=unit_sets)
    except ConfigError as e:
        if on_change == "refuse":
            raise
        log(f"[vocoder-train] starting afresh: {e}")
        state_path.unlink()
        return
    state.load(saved)
    log(f"[vocoder-train] resuming {run.out} at step {state.step}")


def _train_steps(state: TrainState, *, run: _Run, corpus: VocoderCorpus, valid: VocoderCorpus | None,
                 train: TrainConfig, mel: LogMel, speaker_index: dict[str, int] | None, duration_predictor: bool,
                 progress: bool) -> tuple[int, float]:
    """Train from ``state.step`` to ``train.steps``, validating and checkpointing on the way; returns
    the steps taken and the seconds they took."""
    from tqdm import tqdm

    # The recipe decays the LR once per epoch: one segment per utterance.
    steps_per_epoch = max(1, len(corpus) // train.batch_size)
    bar = tqdm(total=train.steps, initial=min(state.step, train.steps), desc="vocoder-train", unit="step",
               disable=not progress)
    t_start = time.perf_counter()
    steps_this_run = 0
    while state.step < train.steps:
        batch = corpus.segments(batch=train.batch_size, segment_units=train.segment_units, generator=state.sampler,
                                speaker_index=speaker_index)
        losses = _train_step(state, batch, train=train, mel=mel, duration_predictor=duration_predictor,
                             steps_per_epoch=steps_per_epoch)
        steps_this_run += 1
        step = state.step
        state.history.append({"step": step, **{k: round(v, 5) for k, v in losses.items()}})
        bar.update(1)
        bar.set_postfix({k: f"{v:.3f}" for k, v in losses.items()})
        if valid is not None and train.valid_every and (step % train.valid_every == 0 or step == train.steps):
            state.history[-1]["valid_mel"] = validate(state.generator, valid, run.out / "valid" / f"step{step:06d}",
                                                      mel=mel, speaker_index=speaker_index)
        if step % train.checkpoint_every == 0 or step == train.steps:
            run.checkpoint(state, finished=step == train.steps)
    bar.close()
    if steps_this_run == 0 and not all(p.is_file() for pair in run.paths.values() for p in pair):
        run.checkpoint(state, finished=True)
    return steps_this_run, time.perf_counter() - t_start


def _train_step(state: TrainState, batch: dict[str, torch.Tensor], *, train: TrainConfig, mel: LogMel,
                duration_predictor: bool, steps_per_epoch: int) -> dict[str, float]:
    """One update of the discriminators (once adversarial) and of the generator, then of the
    schedulers at an epoch's end; returns the step's losses."""
    import torch
    from .losses import discriminator_loss, feature_matching_loss, generator_adv_loss, mel_loss

    gen, disc = state.generator, state.discriminators
    real = batch["audio"]
    fake = gen(batch["code"], batch["table"], batch.get("spkr"))
    adversarial = state.step >= train.adversarial_from
    losses: dict[str, float] = {}
    if adversarial:
        state.opt_d.zero_grad()
        loss_d = discriminator_loss(disc(real), disc(fake.detach()))
        loss_d.backward()
        state.opt_d.step()
        losses["d"] = loss_d.item()
    state.opt_g.zero_grad()
    loss_mel = mel_loss(mel, real[:, 0], fake[:, 0])
    loss_g = train.lambda_mel * loss_mel
    if adversarial:
        with torch.no_grad():
            real_out = disc(real)
        fake_out = disc(fake)
        adv, fm = generator_adv_loss(fake_out), feature_matching_loss(real_out, fake_out)
        loss_g = loss_g + adv + train.lambda_fm * fm
        losses |= {"g_adv": adv.item(), "fm": fm.item()}
    if duration_predictor:
        dur = _duration_loss(gen, batch["code"], batch["table"])
        loss_g = loss_g + dur
        losses["dur"] = dur.item()
    loss_g.backward()
    state.opt_g.step()
    state.step += 1
    if state.step % steps_per_epoch == 0:
        state.sched_g.step()
        if adversarial:  # (the discriminators' LR decays from when they join)
            state.sched_d.step()
    losses["mel"] = loss_mel.item()
    return losses


def validate(gen: SharedGenerators, valid: VocoderCorpus, out: Path, *, mel: LogMel,
             speaker_index: dict[str, int] | None) -> dict[str, float]:
    """Resynthesise the first validation utterances of every unit set: wavs, one mel plot per set,
    and the mean mel L1 per set (the training loss's measure, on whole utterances)."""
    import torch
    from .losses import mel_loss

    from .plots import plot_mels
    from .synth import write_wav

    gen.eval()
    grad = torch.is_grad_enabled()
    torch.set_grad_enabled(False)  # what @torch.no_grad() does, without importing torch with the module
    scores = {}
    try:
        for t, name in enumerate(valid.names):
            l1, waves = [], []
            for i in range(min(VALID_UTTERANCES, len(valid))):
                code = torch.as_tensor(valid.units[name][i])[None]
                spkr = (torch.tensor([[speaker_index[valid.speakers[i]]]])
                        if speaker_index is not None and valid.speakers else None)
                wav = gen(code, torch.tensor([t]), spkr)[0, 0].numpy()
                ref = valid.waveform(i)
                n = min(len(ref), len(wav))
                l1.append(float(mel_loss(mel, torch.from_numpy(ref[:n])[None], torch.from_numpy(wav[:n])[None])))
                write_wav(out / name / f"{valid.utt_ids[i]}.wav", wav)
                waves.append((ref, wav, valid.utt_ids[i]))
            scores[name] = float(np.mean(l1))
            ref, wav, utt = waves[0]
            plot_mels([(f"{utt} original", ref), (f"{utt} resynthesised ({name} units)", wav)],
                      out / f"{name}_mel.png")
    finally:
        gen.train()
        torch.set_grad_enabled(grad)
    return scores


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--manifest", required=True, type=Path, help="training manifest (16 kHz audio)")
    parser.add_argument("--units", required=True, type=Path, help="its units (.km, one line per manifest row, 50 Hz)")
    parser.add_argument("--num-units", required=True, type=int, help="K, the size of the unit vocabulary")
    parser.add_argument("--out", required=True, type=Path,
                        help="output folder (train_state.pt while training; vocoder.pt + config.json when finished)")
    parser.add_argument("--steps", type=int, default=TrainConfig.steps, help="total training steps (default %(default)s)")
    parser.add_argument("--channels", type=int, default=128,
                        help="generator width upsample_initial_channel (512 published; default %(default)s for CPU)")
    parser.add_argument("--embedding-dim", type=int, default=128, help="unit embedding size (default %(default)s)")
    parser.add_argument("--valid-manifest", type=Path, help="validation manifest")
    parser.add_argument("--valid-units", type=Path, help="its units")
    parser.add_argument("--multispeaker", action="store_true",
                        help="learn a speaker embedding (speakers from the utterance ids, see manifests/README.md)")
    parser.add_argument("--duration-predictor", action="store_true",
                        help="also train a duration predictor (synthesis from deduplicated units: --durations)")
    parser.add_argument("--batch-size", type=int, default=TrainConfig.batch_size, help="segments per step")
    parser.add_argument("--segment-units", type=int, default=TrainConfig.segment_units, help="units per segment")
    parser.add_argument("--lr", type=float, default=TrainConfig.lr, help="AdamW learning rate")
    parser.add_argument("--adversarial-from", type=int, default=0,
                        help="step at which the GAN losses start (default 0: from the start, as published)")
    parser.add_argument("--disc-scale", type=float, default=DiscriminatorConfig.scale,
                        help="discriminator width factor (1.0 = published; default %(default)s)")
    parser.add_argument("--checkpoint-every", type=int, default=TrainConfig.checkpoint_every, help="steps")
    parser.add_argument("--valid-every", type=int, default=TrainConfig.valid_every, help="steps (0 = never)")
    parser.add_argument("--seed", type=int, default=TrainConfig.seed, help="random seed")
    parser.add_argument("--downmix", action="store_true",
                        help="average the channels of multi-channel audio (default: refuse it)")
    parser.add_argument("--threads", type=positive_int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    with torch_threads(args.threads):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    from .data import UnitSet

    if (args.valid_manifest is None) != (args.valid_units is None):
        raise ConfigError("--valid-manifest and --valid-units go together")
    cfg = TrainConfig(steps=args.steps, batch_size=args.batch_size, segment_units=args.segment_units, lr=args.lr,
                      adversarial_from=args.adversarial_from, checkpoint_every=args.checkpoint_every,
                      valid_every=args.valid_every, seed=args.seed,
                      discriminator=DiscriminatorConfig(scale=args.disc_scale))
    result = train_vocoder(
        args.manifest, [UnitSet("units", args.units, args.num_units)], args.out, train=cfg, channels=args.channels,
        embedding_dim=args.embedding_dim, multispeaker=args.multispeaker, duration_predictor=args.duration_predictor,
        valid_manifest=args.valid_manifest,
        valid_units={"units": args.valid_units} if args.valid_units is not None else None,
        downmix=args.downmix, progress=not args.no_progress,
    )
    last = result["history"][-1] if result["history"] else {}
    rate = f", {result['steps_per_second']:.2f} steps/s" if result["steps_per_second"] else ""
    print(f"{result['steps']} steps ({result['steps_this_run']} in this run{rate}); last mel L1 "
          f"{last.get('mel', float('nan')):.3f} -> {args.out / 'vocoder.pt'}, {args.out / 'config.json'}")
    return 0
