#!/usr/bin/env bash
# Per-layer report of a pretrained HuBERT on an aligned corpus's unseen test speakers, next to
# log-mel frames: triphone ABX within / across speakers on the features, and PNMI / phone purity of
# k = 100 units (k-means fitted on the train split, scored on test). Usage:
#   bash examples/pretrain/evaluate.sh CHECKPOINT CORPUS OUT     (repository root, .venv active)
# CORPUS is a `spokenlm synth-corpus` folder (manifests/, labels/, items/); the demo's is
# `spokenlm synth-corpus --out CORPUS --hours 1.0`. Writes OUT/table.md and OUT/<name>/{abx,units}.json.
set -euo pipefail
CKPT=$(realpath "${1:?usage: evaluate.sh CHECKPOINT CORPUS OUT}")
C=$(realpath "${2:?usage: evaluate.sh CHECKPOINT CORPUS OUT}")
OUT=$(realpath -m "${3:?usage: evaluate.sh CHECKPOINT CORPUS OUT}")
K=${K:-100}
mkdir -p "$OUT"
export PYTHONWARNINGS=ignore
LAYERS=$(python -c "import spokenlm_plugin;from spokenlm_plugin.finetune.pretrained import load_pretrained;print(load_pretrained('$CKPT').cfg.model.encoder_layers)")

evaluate() {  # NAME: features already in OUT/NAME/{train,test}
  local d=$OUT/$1
  spokenlm abx --features "$d/test" --item "$C/items/test.triphone.item" --json "$d/abx.json" > /dev/null
  spokenlm kmeans fit --features "$d/train" --split train --k "$K" --niter 20 --max-points 100000 \
    --out "$d/km.npy" > /dev/null
  spokenlm kmeans assign --features "$d/test" --split test --centroids "$d/km.npy" --out "$d/test.km" > /dev/null
  spokenlm unit-quality --units "$d/test.km" --labels "$C/labels/test.phn" --dict "$C/labels/dict.phn.txt" \
    --json "$d/units.json" > /dev/null
}

for s in train test; do
  spokenlm baseline-features --kind logmel --manifest "$C/manifests/$s.tsv" --out "$OUT/logmel/$s" \
    --per-utterance --no-progress > /dev/null
done
evaluate logmel
for ((l = 1; l <= LAYERS; l++)); do
  for s in train test; do
    spokenlm dump-features --checkpoint "$CKPT" --layer "$l" --manifest "$C/manifests/$s.tsv" \
      --out "$OUT/layer$l/$s" --per-utterance --no-progress > /dev/null
  done
  evaluate "layer$l"
done

python - "$OUT" "$LAYERS" "$K" <<'PY'
import json, sys
from pathlib import Path
out, layers, k = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
rows = [f"| features | ABX within (%) | ABX across (%) | PNMI (k={k}) | phone purity |", "|---|---:|---:|---:|---:|"]
for name in ["logmel"] + [f"layer{l}" for l in range(1, layers + 1)]:
    abx = {r["speaker"]: r["error"] for r in json.loads((out / name / "abx.json").read_text())["results"]}
    units = json.loads((out / name / "units.json").read_text())
    rows.append(f"| {name} | {100 * abx['within']:.2f} | {100 * abx['across']:.2f} | {units['pnmi']:.3f} | "
                f"{units['phone_purity']:.3f} |")
(out / "table.md").write_text("\n".join(rows) + "\n")
print("\n".join(rows))
PY
