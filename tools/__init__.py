"""The project's own tooling: results, exporting notebooks, shipping checkpoints, runs."""
