#!/usr/bin/env bash
# The demo: synthetic data -> a RELION project -> a real Class2D job submitted by relion_pipeliner with
# "Submit to queue" = cryocloud (local backend) -> status and cost.
# usage: scripts/demo.sh [PROJECT_DIR]   (default: a new folder under /tmp)
set -euo pipefail
HERE=$(cd "$(dirname "$0")/.." && pwd)
export PATH="$HERE/.venv/bin:$PATH"
DIR=${1:-$(mktemp -d /tmp/cryocloud-demo.XXXXXX)}
echo "== 1. synthetic data and a RELION project in $DIR"
cryocloud demo-data "$DIR" --particles 500 --movies 3
cd "$DIR"
echo "== 2. connect RELION's queue to cryocloud (what you would put in ~/.bashrc or the Running tab)"
eval "$(cryocloud relion setup)"
echo "== 3. RELION adds a Class2D job with Submit to queue = Yes and runs it (relion_pipeliner, as the GUI would)"
relion_pipeliner --addJob Class2D --setJobAlias demo2d --addJobOptions \
  "fn_img == Synthetic/particles.star;nr_classes == 2;nr_iter == 3;particle_diameter == 150;psi_sampling == 12;offset_step == 2;offset_range == 5;nr_pool == 30;nr_mpi == 1;nr_threads == 2;do_queue == Yes" >/dev/null
JOB=$(ls -d Class2D/job*/ | tail -1)
time relion_pipeliner --RunJobs "$JOB" --sec_wait_after 1 | grep -E "Submitted|Executing" || true
echo "== 4. RELION's view of the job (default_pipeline.star: 2 = Succeeded)"
awk '/data_pipeline_processes/{f=1} f&&/job[0-9]+\//{print "   ", $1, "alias", $2, "status", $4} /data_pipeline_nodes/{f=0}' default_pipeline.star
echo "== 5. cryocloud's view"
cryocloud status
cryocloud costs
echo "outputs: $(ls "$JOB" | grep -c run_it) iteration files in $DIR/$JOB"
echo "(cryocloud's monitor exits by itself once no job is active.)"
echo "Open it in RELION's GUI:  export PATH=\"$HERE/.venv/bin:\$PATH\"; cd \"$DIR\"; eval \"\$(cryocloud relion setup)\"; relion &"
