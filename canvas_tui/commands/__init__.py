"""The command-line commands that are more than a call into one module: each takes the parsed
arguments and returns an exit code (cli.py dispatches to them)."""
