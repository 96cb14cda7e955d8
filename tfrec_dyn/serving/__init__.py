"""Serving: exported SavedModel signatures and the TF-Serving-compatible REST server.

Filled by the pipeline issue (#4); models already save and load as SavedModels
through `tfrec_dyn.training.run`.
"""
