"""Serving: the exported SavedModel and a TF-Serving-compatible REST server.

* `export`: `export_saved_model` writes a string-in / string-out SavedModel
  (`serving_default`, `serving_tf_example`, warm-up requests) in the layout
  TF Serving loads.
* `rest`: `create_app` / `serve`, TF Serving's REST API (`tfrec-dyn serve`).
"""
