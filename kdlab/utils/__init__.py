"""Small helpers: run-folder files, atomic JSON writes."""
