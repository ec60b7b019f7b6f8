#!/usr/bin/env python3
"""Loom's entry point: no arguments opens the editor; subcommands run headless."""
import sys

from core.cli import main

if __name__ == "__main__":
    sys.exit(main())
