#!/usr/bin/env bash
# Held-out check: the demo's fine-tuning recipe (config/demo.yaml), applied to the shipped small
# HuBERT, on speech of a synthesizer and voices the project never used (espeak-ng; none of them in
# pretraining), against log-mel baselines computed the same way. Usage:
#   bash examples/heldout/run.sh OUT            (from the repository root, with .venv active)
# Writes OUT/results.json; every step is one documented command, so this is what a user would run.
set -euo pipefail
OUT=$(realpath -m "${1:?usage: run.sh OUT}")
REPO=$(cd "$(dirname "$0")/../.." && pwd)
BASE=$REPO/spokenlm_plugin/resources/hubert_small/hubert_small.pt
mkdir -p "$OUT"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} PYTHONWARNINGS=ignore

# 1. 4 train voices, 2 test voices (valid: the train voices on other sentences)
spokenlm synth-corpus --engine espeak --out "$OUT/corpus" --hours 0.3 --test-fraction 0.25
C=$OUT/corpus
mkdir -p "$OUT/data"
for s in train valid test; do cp "$C/manifests/$s.tsv" "$C/labels/$s.phn" "$OUT/data/"; done
cp "$C/labels/dict.phn.txt" "$OUT/data/"

# 2. the demo's recipe, unchanged
fairseq-hydra-train --config-dir "$REPO/examples/finetune/config" --config-name demo \
  common.user_dir="$REPO/spokenlm_plugin" task.data="$OUT/data" \
  model.w2v_path="$BASE" checkpoint.save_dir="$OUT/ft" > "$OUT/train.log" 2>&1
fairseq-validate "$OUT/data" --user-dir "$REPO/spokenlm_plugin" --path "$OUT/ft/checkpoint_last.pt" \
  --task phoneme_frame_cls --valid-subset test --batch-size 1 > "$OUT/validate.log" 2>&1

# 3. log-mel baselines on the same splits
spokenlm baseline-classifier --train-manifest "$OUT/data/train.tsv" --train-labels "$OUT/data/train.phn" \
  --test-manifest "$OUT/data/test.tsv" --test-labels "$OUT/data/test.phn" --dict "$OUT/data/dict.phn.txt" \
  --json "$OUT/logmel_classifier.json"
spokenlm baseline-features --kind logmel --manifest "$OUT/data/test.tsv" --out "$OUT/feats/logmel" --per-utterance

# 4. ABX of the base and fine-tuned models' features on the test voices
LAYERS=$(python -c "import spokenlm_plugin;from spokenlm_plugin.finetune.pretrained import load_pretrained;print(load_pretrained('$BASE').cfg.model.encoder_layers)")
spokenlm dump-features --checkpoint "$BASE" --layer $((LAYERS - 1)) --manifest "$OUT/data/test.tsv" --out "$OUT/feats/base" --per-utterance --no-progress
spokenlm dump-features --checkpoint "$OUT/ft/checkpoint_last.pt" --layer "$LAYERS" --manifest "$OUT/data/test.tsv" --out "$OUT/feats/finetuned" --per-utterance --no-progress
for f in logmel base finetuned; do
  spokenlm abx --features "$OUT/feats/$f" --item "$C/items/test.triphone.item" --json "$OUT/abx_$f.json"
done

python - "$OUT" <<'PY'
import json, re, sys
from pathlib import Path
out = Path(sys.argv[1])
line = [l for l in (out / "validate.log").read_text().splitlines() if "valid on 'test' subset" in l][-1]
metrics = dict(re.findall(r"\| (\w+) ([0-9.]+)", line))
result = {
    "finetuned": {k: float(v) for k, v in metrics.items() if k in ("accuracy", "per", "loss")},
    "logmel_classifier": json.loads((out / "logmel_classifier.json").read_text()),
    "abx": {f: json.loads((out / f"abx_{f}.json").read_text()) for f in ("logmel", "base", "finetuned")},
}
(out / "results.json").write_text(json.dumps(result, indent=1))
print(json.dumps(result, indent=1))
PY
