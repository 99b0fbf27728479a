"""Synthetic data for demos and tests: a phantom, particles made by relion_project, small movies.

Needs the demo extra (numpy, pandas, starfile, mrcfile): pip install 'cryocloud[demo]'."""
