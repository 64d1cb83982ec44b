"""arq jobs: the worker set-up and one module per job."""
