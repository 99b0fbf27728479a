"""Turning what a user gave (RELION's filled submission script, a command) into a JobSpec."""
