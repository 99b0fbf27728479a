#!/usr/bin/env bash
# Install what cryocloud's demo and tests need from Debian: RELION (CPU), Open MPI, Slurm + munge, and chromium
# (the dashboard's browser test drives it headless through Playwright; nothing is downloaded at run time).
# Idempotent: installs only what is missing. Needs root (or sudo).
# usage: scripts/install-deps.sh            (SKIP_APT=1 to only check)
set -euo pipefail
need=()
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }
have relion_refine || need+=(relion)
have mpirun || need+=(openmpi-bin)
have slurmctld || need+=(slurm-wlm)
have munged || need+=(munge)
have gs || need+=(ghostscript)   # RELION writes its PDF logs with it
have chromium || need+=(chromium)   # the dashboard's browser test (tests/server/test_dashboard.py)
if [ ${#need[@]} -eq 0 ]; then
  echo "[install-deps] all present: relion, openmpi-bin, slurm-wlm, munge, ghostscript, chromium"
  exit 0
fi
[ "${SKIP_APT:-0}" = 1 ] && { echo "[install-deps] missing: ${need[*]}" >&2; exit 1; }
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
echo "[install-deps] installing: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${need[@]}"
