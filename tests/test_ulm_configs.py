"""examples/ulm/config/demo.yaml and demo_raw.yaml: the demo's unit-LM recipe for fairseq-hydra-train.

The configs are checked against the demo itself: the ``fairseq-train`` arguments that
``stage_ulm._train_lm`` builds (captured instead of run) become fairseq's full training config, the
YAML is composed the way ``fairseq-hydra-train`` composes it, and the two must agree field by field.
A change to the demo's recipe that the configs do not follow fails here."""

from __future__ import annotations

import dataclasses

from pathlib import Path
from typing import Any, Sequence, cast

import pytest
from omegaconf import OmegaConf

import spokenlm_plugin  # noqa: F401  (registers the unit LMs; fixes torch.load for checkpoints)
from spokenlm_plugin import cli
from spokenlm_plugin.demo import stage_ulm
from spokenlm_plugin.ulm.score import load_unit_lm, read_submission
from tests.conftest import REPO, run_cli
from tests.ulm_support import ENV, K, USER_DIR

CONFIG_DIR = REPO / "examples" / "ulm" / "config"
#: Which config holds the recipe of each unit sequence (LMSize FULL[dedup]).
CONFIGS = {True: "demo", False: "demo_raw"}


def _demo_args(*, dedup: bool, data: Path, save: Path, centroids: Path | None, mode: str, updates: int,
               monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The fairseq-train arguments of the demo's LM, captured from ``_train_lm`` instead of running it."""
    calls: list[tuple[str, list[str]]] = []

    def capture(name: str, args: Sequence[str], **_: Any) -> float:
        calls.append((name, list(map(str, args))))
        return 0.0

    monkeypatch.setattr(stage_ulm, "run_tool", capture)
    size = dataclasses.replace(stage_ulm.FULL[dedup], updates=updates)
    stage_ulm._train_lm(data, save, size=size, centroids=centroids, mode=mode)
    ((name, args),) = calls
    assert name == "fairseq-train"
    return args


def _train_config(args: list[str]) -> dict[str, Any]:
    """fairseq-train's full training config for ``args`` (what fairseq_cli.train.main receives)."""
    from fairseq import options
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    namespace = options.parse_args_and_arch(options.get_training_parser(), input_args=args)
    return cast(dict[str, Any], OmegaConf.to_container(convert_namespace_to_omegaconf(namespace), resolve=True,
                                                       enum_to_str=True))


def _hydra_config(name: str, overrides: list[str]) -> dict[str, Any]:
    """The config fairseq-hydra-train trains with: ``--config-dir CONFIG_DIR --config-name name overrides``."""
    from fairseq.dataclass.initialize import add_defaults, hydra_init
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    # fairseq_cli.hydra_train.cli_main: the config name's schema is FairseqConfig; @hydra.main (no
    # version_base) composes with hydra 1.1 semantics; _hydra_main then adds the registries' defaults.
    hydra_init(name)
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.1"):
        cfg = compose(name, overrides=overrides)
    add_defaults(cfg)
    return cast(dict[str, Any], OmegaConf.to_container(cfg, resolve=True, enum_to_str=True))


@pytest.mark.parametrize("dedup", [True, False], ids=["dedup", "raw"])
@pytest.mark.parametrize("init", ["random", "centroids"])
def test_demo_configs_match_the_demo_recipe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dedup: bool,
                                            init: str) -> None:
    from fairseq.models import ARCH_MODEL_NAME_REGISTRY

    data, save, centroids = tmp_path / "data", tmp_path / "save", tmp_path / "km" / "centroids.npy"
    args = _demo_args(dedup=dedup, data=data, save=save, centroids=centroids if init == "centroids" else None,
                      mode="project", updates=123, monkeypatch=monkeypatch)
    demo = _train_config(args)
    # What the configs leave to the command line (their header comment): data, plugin, budget, output, init.
    overrides = [f"task.data={data}", f"common.user_dir={USER_DIR}", "optimization.max_update=123",
                 f"checkpoint.save_dir={save}"]
    if init == "centroids":
        overrides += [f"model.unit_centroids={centroids}", "model.centroid_init=project"]
    hydra = _hydra_config(CONFIGS[dedup], overrides)

    # The demo names the argparse arch (unit_lstm_lm_small), a config its model: same model, sizes
    # written out (compared below with every other field).
    assert ARCH_MODEL_NAME_REGISTRY[demo["model"].pop("_name")] == hydra["model"].pop("_name") == "unit_lstm_lm"
    # fairseq-train's argparse adds a BLEU scorer config that language-model training never uses.
    demo.pop("scoring")
    hydra.pop("scoring", None)
    assert set(demo) == set(hydra)
    for section in demo:
        if isinstance(demo[section], dict):
            differ = {k: (demo[section].get(k), hydra[section].get(k)) for k in demo[section].keys() | hydra[section].keys()
                      if demo[section].get(k, "<missing>") != hydra[section].get(k, "<missing>")}
            assert not differ, f"{CONFIGS[dedup]}.yaml {section}: (demo, config) {differ}"
        else:
            assert demo[section] == hydra[section], section
    # The captured arguments are FULL[dedup]'s: the config carries LMSize's numbers.
    size = stage_ulm.FULL[dedup]
    model = hydra["model"]
    assert (model["decoder_embed_dim"], model["decoder_hidden_size"], model["decoder_layers"]) == (size.embed, size.hidden, size.layers)
    assert (hydra["task"]["tokens_per_sample"], hydra["dataset"]["max_tokens"], hydra["optimization"]["lr"],
            hydra["lr_scheduler"]["warmup_updates"]) == (size.tokens_per_sample, size.max_tokens, [size.lr], size.warmup)


@pytest.mark.parametrize("dedup", [True, False], ids=["dedup", "raw"])
def test_demo_configs_default_budget_is_the_demo_one(dedup: bool) -> None:
    """The shipped max_update is the demo's; data and user dir come from the command line."""
    cfg = OmegaConf.load(CONFIG_DIR / f"{CONFIGS[dedup]}.yaml")
    assert cfg.optimization.max_update == stage_ulm.FULL[dedup].updates
    assert OmegaConf.is_missing(cfg.task, "data") and OmegaConf.is_missing(cfg.common, "user_dir")


def test_fairseq_hydra_train_demo_config_checkpoint_scores(lm_data: Path, units: Path, tmp_path: Path) -> None:
    """The README's command line trains, and lm-score reads the checkpoint."""
    save = tmp_path / "ckpt"
    run_cli("fairseq-hydra-train", "--config-dir", str(CONFIG_DIR), "--config-name", "demo",
            f"task.data={lm_data}", f"common.user_dir={USER_DIR}", "optimization.max_update=3",
            f"checkpoint.save_dir={save}", f"hydra.run.dir={tmp_path / 'hydra'}",
            # K = 30 units of D = 24: embedding 64 > min(K, D), so the demo would take project
            f"model.unit_centroids={units / 'centroids.npy'}", "model.centroid_init=project",
            cwd=tmp_path, env=ENV)
    model, task = load_unit_lm(save / "checkpoint_best.pt")
    decoder = model.decoder
    assert type(model).__name__ == "UnitLSTMLanguageModel"
    assert (decoder.hidden_size, decoder.num_layers, decoder.embed_tokens.table.embedding_dim) == (256, 2, 24)
    assert len(task.source_dictionary) == K + 4
    out = tmp_path / "scores.txt"
    assert cli.main(["lm-score", "--checkpoint", str(save / "checkpoint_best.pt"), "--units", str(units / "test.km"),
                     "--ids", str(units / "test.ids"), "--out", str(out)]) == 0
    scores = read_submission(out)
    assert len(scores) == 20 and all(s < 0 for s in scores.values())
