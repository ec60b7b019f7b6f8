"""Exit codes scripts can rely on (also listed in the README)."""
OK = 0
INVALID_GRAPH = 1  # check found problems, or train refused an invalid graph
BAD_INPUT = 2  # usage error, unreadable/malformed file, missing dataset
TRAINING_FAILED = 3  # non-finite loss or another failure during training
INTERRUPTED = 130  # Ctrl-C / SIGTERM: a checkpoint was saved, resume with --resume
