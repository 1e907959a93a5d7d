"""Search spaces: NAS-Bench-201 cells, DARTS cells, and a macro space over the classic blocks."""
