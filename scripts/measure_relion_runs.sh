#!/usr/bin/env bash
# Measure RELION (CPU) run times on this machine for the planner's runtime model (issue 4).
# usage: scripts/measure_relion_runs.sh OUTDIR [REPEATS=1]
# Appends one CSV row per run to OUTDIR/measured.csv in the format of src/cryocloud/data/calibration.csv
# (job_type, sizes, cpus, wall seconds). Then: .venv/bin/python scripts/fit_runtime_model.py --add OUTDIR/measured.csv
# Needs relion_* on PATH, and a python with numpy, mrcfile, starfile (PY=...; default: this repo's .venv).
# Dataset and movie generators: the recipes of notes/relion/scripts (NOTES=... to point elsewhere).
set -euo pipefail
OUT=${1:?outdir}; REPEATS=${2:-1}
HERE=$(cd "$(dirname "$0")" && pwd)
PY=${PY:-$HERE/../.venv/bin/python}
NOTES=${NOTES:-/work/shared/notes/relion/scripts}
CPUS=$(nproc)
# glibc malloc settings that keep relion_refine out of page-fault churn (notes/relion section 2)
export MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=4294967296 MALLOC_TOP_PAD_=536870912
mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd); CSV=$OUT/measured.csv
[ -f "$CSV" ] || echo "source,job_type,particles,box,classes,iterations,healpix_order,movies,frames,pixels,cpus,gpus,gpu_model,machine,hours" > "$CSV"

secs() { local t0 t1; t0=$(date +%s.%N); "$@" > /dev/null 2>&1 || { echo "FAILED: $*" >&2; return 1; }; t1=$(date +%s.%N); echo "$t1 - $t0" | bc; }
row() { echo "measured-here,$1,$2,$3,$4,$5,$6,$7,$8,$9,$CPUS,0,,$(hostname -s)-cpu,$(echo "scale=8; ${10} / 3600" | bc)" >> "$CSV"; }

dataset() {  # N -> $OUT/dsN
  local d=$OUT/ds$1
  [ -f "$d/particles.star" ] && return 0
  mkdir -p "$d"; (cd "$d" && "$PY" "$NOTES/make_phantom.py" --outdir . --n "$1" --box 64 --apix 3.0 > /dev/null &&
    relion_project --i phantom.mrc --ang angles.star --ctf --add_noise --white_noise 2 --o noisy > /dev/null 2>&1 &&
    relion_preprocess --operate_on noisy.mrcs --norm --bg_radius 25 --operate_out particles.mrcs > /dev/null 2>&1 &&
    sed 's/@noisy\.mrcs/@particles.mrcs/' noisy.star > particles.star && rm -f noisy.mrcs noisy.star &&
    relion_image_handler --i phantom.mrc --lowpass 40 --o ref_lp40.mrc > /dev/null 2>&1)
}

class2d() {  # N K ITER
  local d=$OUT/ds$1 o; o=$d/c2d_K$2_it$3; mkdir -p "$o"
  local s; s=$(cd "$d" && secs relion_refine --i particles.star --o "$o/run" --dont_combine_weights_via_disc --ctf \
    --iter "$3" --tau2_fudge 2 --particle_diameter 150 --K "$2" --flatten_solvent --zero_mask --oversampling 1 \
    --psi_step 12 --offset_range 5 --offset_step 2 --norm --scale --j "$CPUS" --pool 30 --pad 2)
  row Class2D "$1" 64 "$2" "$3" "" "" "" "" "$s"
}

class3d() {  # N K ITER HEALPIX
  local d=$OUT/ds$1 o; o=$d/c3d_K$2_it$3_hp$4; mkdir -p "$o"
  local s; s=$(cd "$d" && secs relion_refine --o "$o/run" --i particles.star --ref ref_lp40.mrc --ini_high 40 \
    --dont_combine_weights_via_disc --pool 30 --pad 2 --ctf --iter "$3" --tau2_fudge 4 --particle_diameter 150 \
    --K "$2" --flatten_solvent --zero_mask --oversampling 1 --healpix_order "$4" --offset_range 5 --offset_step 2 \
    --sym C1 --norm --scale --j "$CPUS")
  row Class3D "$1" 64 "$2" "$3" "$4" "" "" "" "$s"
}

motioncorr() {  # NMOVIES FRAMES SIZE PATCHES
  local d=$OUT/mc_$1_$2_$3_$4
  if [ ! -f "$d/Import/job001/movies.star" ]; then
    mkdir -p "$d/Import/job001"
    (cd "$d" && relion_project --i "$OUT/ds500/phantom.mrc" --nr_uniform 200 --o projs > /dev/null 2>&1 &&
      "$PY" "$NOTES/make_movies.py" --projs projs.mrcs --outdir Movies --n "$1" --frames "$2" --size "$3" --format mrc > /dev/null &&
      relion_import --do_movies --optics_group_name opticsGroup1 --angpix 3.0 --kV 300 --Cs 2.7 --Q0 0.1 \
        --i "Movies/*.mrc" --odir Import/job001/ --ofile movies.star > /dev/null 2>&1)
  fi
  rm -rf "$d/MotionCorr"; mkdir -p "$d/MotionCorr/job002"
  local s; s=$(cd "$d" && secs relion_run_motioncorr --i Import/job001/movies.star --o MotionCorr/job002/ \
    --first_frame_sum 1 --last_frame_sum -1 --use_own --j "$CPUS" --bin_factor 1 --bfactor 150 --dose_per_frame 0.5 \
    --preexposure 0 --patch_x "$4" --patch_y "$4" --dose_weighting --save_noDW)
  row MotionCorr "" "" "" "" "" "$1" "$2" "$(( $3 * $3 ))" "$s"
}

dataset 500; dataset 1000
for _ in $(seq "$REPEATS"); do
  motioncorr 3 10 512 1; motioncorr 4 20 1024 1; motioncorr 2 20 2048 5; motioncorr 6 24 1024 3
  class2d 500 2 3; class2d 500 4 5; class2d 1000 2 5; class2d 1000 4 5
  class3d 500 1 2 1; class3d 500 2 3 1; class3d 1000 2 3 2; class3d 1000 1 4 2
done
echo "done: $CSV"
