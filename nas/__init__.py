"""NAS core: search strategies, trial engine, CLI and export."""
