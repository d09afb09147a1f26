#!/usr/bin/env bash
# The second command of a GPU loan: sent at once when `bash .device/gpu_check.sh` returns (the machine
# stays warm about 30 s), with what the shared kit leaves out, in order of value. Each phase gets the
# smaller of its cap and the time left, so the packing at the end always happens:
#   cuda   `pytest -m cuda`: every test written for CUDA (Algorithm 2's trace against the plain-Python
#          reference, a killed run's resume, the protocols' precision fields, no host sync in a round),
#          which the kit's phases do not select
#   share  tools/share_device.py --jobs 8: ResNet-18 on real Fashion-MNIST at 32 px, one run alone, then
#          eight at once (issue 19's target, 8 runs in the time of 2, is a gain of at least 4 runs/hour)
#   slice  the next slice of experiment=gpu_resnet18_fmnist (seed-major; the runs finished in the tree
#          sent along are skipped), its budget the time left, runs stopped at a checkpoint when it is spent
#
#   there: bash tools/gpu_followup.sh      (carry [".device"]; timeout_s = the loan's time left, FOLLOWUP_BUDGET
#          seconds in all, default 200: the script ends about 20 s before it)
#   here:  OUT=/tmp/fu bash tools/gpu_followup.sh   (a dry run: without CUDA every size shrinks and nothing
#          lands in results/; after prepare.sh, or with the project's .venv first on PATH)
# Into $OUT: followup_summary.txt, followup_log.txt and followup.tar.gz (versions.txt, cuda_marked.xml,
# share/ with share.csv, slice/ with each run's run.json and CSV files).
# Then here: python tools/import_gpu_check.py <files_at> (it reads followup.tar.gz as well as results.tar.gz).
set -uo pipefail
T0=$(date +%s)
BUDGET=${FOLLOWUP_BUDGET:-200}
RESERVE=20      # a stopped command's 15 s to end cleanly, and the packing
MIN_PHASE=20
SLICE_MIN=${FOLLOWUP_SLICE_MIN:-150}   # below this no run of the study (E = 40) finishes: the time is not spent
PHASES=${FOLLOWUP_PHASES:-"cuda share slice"}
OUT=${OUT:-$PWD/gpu_followup_out}
mkdir -p "$OUT"
W=$(mktemp -d /tmp/gpu_followup.XXXXXX)
trap 'rm -rf "$W" "${W}_dry_runs"' EXIT   # all that matters is packed into $OUT
SUMMARY=$OUT/followup_summary.txt
: > "$SUMMARY"
exec > >(tee "$OUT/followup_log.txt") 2>&1
say() { printf '[%4ds] %s\n' $(( $(date +%s) - T0 )) "$*"; }
note() { say "$*"; echo "$*" >> "$SUMMARY"; }
left() { echo $(( T0 + BUDGET - RESERVE - $(date +%s) )); }
pack() { tar --exclude='*.pt' --exclude='.checkpoint.pt.*' --exclude='.lock' -czf "$OUT/followup.tar.gz.tmp" -C "$W" . \
           && mv "$OUT/followup.tar.gz.tmp" "$OUT/followup.tar.gz"; }
# Every command of a phase runs through `t`: SIGINT at the phase's deadline (pytest writes its junit
# XML, a sweep records its running runs interrupted), SIGKILL 15 s later.
DEADLINE=0
t() {
  local s=$(( DEADLINE - $(date +%s) ))
  (( s > 0 )) || { say "no time left for: $*"; return 124; }
  timeout --foreground --signal=INT --kill-after=15 "$s" "$@"
}
phase() {
  local name=$1 cap=$2; shift 2
  local s; s=$(left); (( s > cap )) && s=$cap
  if (( s < MIN_PHASE )); then note "SKIP $name: $(left) s left"; return 0; fi
  say "=== $name (up to $s s)"
  local start rc; start=$(date +%s); DEADLINE=$(( start + s ))
  "$@"; rc=$?
  note "$(printf '%-6s rc=%-3s %4ds%s' "$name" "$rc" $(( $(date +%s) - start )) "$( ((rc == 124)) && echo ' (timed out)')")"
  pack
}

[[ -f .device/env.sh ]] && source .device/env.sh
python3 - > "$W/versions.txt" <<'EOF'
import platform, torch, torchvision, timm
print("cuda_available", int(torch.cuda.is_available()))
print("python", platform.python_version(), "| torch", torch.__version__, "| cuda", torch.version.cuda,
      "| torchvision", torchvision.__version__, "| timm", timm.__version__)
if torch.cuda.is_available():
    print("gpu", torch.cuda.get_device_name(0))
EOF
CUDA=$(awk '/^cuda_available/ {print $2}' "$W/versions.txt"); CUDA=${CUDA:-0}
note "gpu_followup: cuda=$CUDA budget=${BUDGET}s phases: $PHASES; commit ${HARDSAMPLES_SOURCE_COMMIT:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}"
FM=(dataset=fashion_mnist logger.wandb.mode=disabled)
if (( CUDA )); then
  SHARE=(model=resnet18 preset=paper fidelity=paper_code batch_size=512 image_size=32 epochs=2) SHARE_JOBS=8 THREADS=2
  SLICE=()
else  # a dry run: the same commands at sizes a shared CPU does in seconds, the slice outside results/
  SHARE=(model.name=test_resnet image_size=8 batch_size=64 dataset.subset=640 epochs=1 fidelity=paper_code)
  SHARE_JOBS=2 THREADS=1
  SLICE=(model.name=test_resnet image_size=8 epochs=1 dataset.subset=1024 batch_size=64 "hydra.sweeper.params.seed=0"
         "hydra.sweeper.params.delta='1.0,0.2'" hydra.launcher.jobs_per_gpu=2 "hydra.sweep.dir=${W}_dry_runs")
fi

run_cuda() {
  t python3 -m pytest -q -p no:cacheprovider -m cuda -rfE --junitxml="$W/cuda_marked.xml" tests/
}
run_share() {
  OMP_NUM_THREADS=$THREADS t python3 tools/share_device.py --jobs "$SHARE_JOBS" --out "$W/share" -- "${FM[@]}" "${SHARE[@]}"
}
run_slice() {
  local minutes; minutes=$(python3 -c "print(round(max($(( DEADLINE - $(date +%s) )) - 40, 10) / 60, 2))")
  OMP_NUM_THREADS=2 t python3 -m hardsamples.train experiment=gpu_resnet18_fmnist logger.wandb.mode=disabled "${SLICE[@]}" \
    "hydra.sweeper.budget_minutes=$minutes" hydra.sweeper.at_budget=stop
  local rc=$? dir=results/fashion_mnist_gpu/runs arg
  for arg in "${SLICE[@]}"; do [[ $arg == hydra.sweep.dir=* ]] && dir=${arg#hydra.sweep.dir=}; done
  local run
  for run in "$dir"/*/; do  # each run's record (import_gpu_check.py keeps those that are over)
    [[ -f $run/run.json ]] || continue
    mkdir -p "$W/slice/$(basename "$run")" && cp "$run"/run.json "$run"/*.csv "$W/slice/$(basename "$run")/"
  done
  return $rc
}

for p in $PHASES; do
  case $p in
    cuda)  phase cuda 90 run_cuda ;;
    share) phase share 100 run_share ;;
    slice) if (( $(left) >= SLICE_MIN )); then phase slice 600 run_slice
           else note "SKIP slice: $(left) s left, under the $SLICE_MIN s in which a slice's runs could finish"; fi ;;
    *)     note "unknown phase $p" ;;
  esac
done
python3 - "$W" <<'EOF' | tee -a "$SUMMARY"
import glob, json, os, sys
import xml.etree.ElementTree as ET
import pandas as pd
w = sys.argv[1]
for xml in sorted(glob.glob(f"{w}/*.xml")):
    root = ET.parse(xml).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    bad = [f"{c.get('classname')}::{c.get('name')}" for c in suite.iter("testcase")
           if c.find("failure") is not None or c.find("error") is not None]
    print(f"{os.path.basename(xml)}: tests {suite.get('tests')} failures {suite.get('failures')} errors "
          f"{suite.get('errors')} skipped {suite.get('skipped')}" + "".join(f"\n  FAILED {b}" for b in bad))
if os.path.isfile(f"{w}/share/share.csv"):
    print(pd.read_csv(f"{w}/share/share.csv").to_string(index=False))
statuses = {os.path.basename(os.path.dirname(r)): json.load(open(r))["status"]
            for r in sorted(glob.glob(f"{w}/slice/*/run.json"))}
print(f"slice: {sum(s in ('finished', 'diverged') for s in statuses.values())} finished run(s)"
      + "".join(f"\n  {name}: {status}" for name, status in statuses.items()))
EOF
pack
ls -la "$OUT"
say "done"
