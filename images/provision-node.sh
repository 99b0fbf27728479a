#!/bin/bash
# Provision a cryocloud node image for one RELION version (run by images/relion-node.pkr.hcl on a fresh
# Ubuntu 22.04 GPU base image; see docs/node-image.md). NOT run against AWS from this repository's CI.
#   RELION_VERSION=5.0.0 CRYOCLOUD_DEPS="boto3>=1.34 obstore>=0.12 click>=8.1 rich>=13 gemmi>=0.6" ./provision-node.sh
set -euo pipefail
: "${RELION_VERSION:?set RELION_VERSION, e.g. 5.0.0}"
: "${CRYOCLOUD_DEPS:?set CRYOCLOUD_DEPS to cryocloud's runtime requirements}"
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends build-essential cmake git openmpi-bin libopenmpi-dev libfftw3-dev \
    libtiff-dev libpng-dev ghostscript libxft-dev python3 python3-venv python3-pip
# RELION at exactly the lab's version (CUDA build when the base image has the toolkit)
git clone --depth 1 --branch "${RELION_VERSION}" https://github.com/3dem/relion.git /opt/relion-src
cmake -S /opt/relion-src -B /opt/relion-src/build -DCMAKE_INSTALL_PREFIX=/opt/relion \
    -DCUDA="$(command -v nvcc >/dev/null && echo ON || echo OFF)" -DGUI=OFF
cmake --build /opt/relion-src/build -j "$(nproc)" --target install
ln -sf /opt/relion/bin/* /usr/local/bin/
relion_refine --version | grep -q "RELION version: ${RELION_VERSION}" || { echo "built the wrong RELION" >&2; exit 1; }
# cryocloud's dependencies (the node installs cryocloud itself, the lab's exact wheel, with --no-deps at boot)
python3 -m venv /opt/cryocloud-python
/opt/cryocloud-python/bin/pip install --no-cache-dir ${CRYOCLOUD_DEPS}
# the profile's `python` key names this interpreter: python = "/opt/cryocloud-python/bin/python"
rm -rf /opt/relion-src
