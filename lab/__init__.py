"""sparkwatch's incident lab: reproduce each war story on real software and watch the
shipped alerts catch it. Run from a repository checkout: ``.venv/bin/python -m lab --help``."""
