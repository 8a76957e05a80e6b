"""Shared data layer: loading (local files, HF datasets, embedded), tokenisation + collation, DataModules.

`kdlab.data.loading` and `kdlab.data.embedded` are torch-free so configs can be checked before any
heavy import; the DataModules in `kdlab.data.text` import Lightning.
"""
