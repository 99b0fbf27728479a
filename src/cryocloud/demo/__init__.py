"""Synthetic data for demos and tests: a phantom, particles made by relion_project, small movies."""
