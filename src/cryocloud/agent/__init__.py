"""The one runner: executes a job's commands on whatever machine a backend chose."""
