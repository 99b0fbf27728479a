"""What cryocloud does in a lab's AWS account that is not a job: the account made ready (`bootstrap.py`)."""
