"""Exit codes scripts can rely on (also listed in the README)."""
OK = 0
INVALID_GRAPH = 1  # check found problems, or train refused an invalid graph
BAD_INPUT = 2  # usage error, unreadable/malformed file, missing dataset
TRAINING_FAILED = 3  # non-finite loss, a run file that cannot be written, out of memory
INTERNAL = 4  # an unexpected exception: a bug in Loom (LOOM_DEBUG=1 shows the traceback)
INTERRUPTED = 130  # Ctrl-C / SIGTERM: a checkpoint was saved, resume with --resume
