#!/usr/bin/env python3
"""A fan-out task that does real work and is installable anywhere (`pip install openmm`): energy minimisation of
a small peptide from a perturbed start, one seed per task, scored by its final potential energy. It stands in
for Rosetta's relax (a licensed program): many independent starts, a score per model, the best K kept.

The peptide is the first RESIDUES residues of the protein OpenMM ships as its installation test (app/data/
test.pdb, hydrogens included), in vacuum with Amber14 (the cut end's missing bond ignored). The start is every
atom moved by a Gaussian of SIGMA nm drawn from the seed. OpenMM's Reference platform sums in a fixed order, so a
seed gives the same energy on every machine and backend.

usage: minimize.py SEED [--fail-seed N]   writes model.pdb and score.sc (total_score description) here
"""

from __future__ import annotations

import argparse
import os
import sys

RESIDUES = 5
SIGMA = 0.02  # nm


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("seed", type=int)
    ap.add_argument("--fail-seed", type=int, default=None, help="fail on purpose for this seed (tests)")
    a = ap.parse_args(argv)
    if a.fail_seed == a.seed:
        print(f"seed {a.seed}: failing on purpose", file=sys.stderr)
        return 3
    import numpy as np
    import openmm
    from openmm import app, unit

    pdb = app.PDBFile(os.path.join(os.path.dirname(openmm.__file__), "app", "data", "test.pdb"))
    model = app.Modeller(pdb.topology, pdb.positions)
    model.delete([r for r in model.topology.residues() if r.index >= RESIDUES])
    forcefield = app.ForceField("amber14-all.xml")
    system = forcefield.createSystem(model.topology, nonbondedMethod=app.NoCutoff, constraints=None,
                                     ignoreExternalBonds=True)
    xyz = np.array(model.positions.value_in_unit(unit.nanometer))
    xyz += np.random.default_rng(a.seed).normal(0.0, SIGMA, xyz.shape)
    context = openmm.Context(system, openmm.VerletIntegrator(0.001),
                             openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(xyz * unit.nanometer)
    openmm.LocalEnergyMinimizer.minimize(context, 1.0, 2000)
    state = context.getState(getEnergy=True, getPositions=True)
    energy = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
    with open("model.pdb", "w") as f:
        app.PDBFile.writeFile(model.topology, state.getPositions(), f)
    with open("score.sc", "w") as f:
        f.write(f"total_score description\n{energy:.4f} model\n")
    print(f"seed {a.seed}: {energy:.4f} kJ/mol")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
