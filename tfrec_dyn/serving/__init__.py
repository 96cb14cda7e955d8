"""Serving: the exported SavedModel and a TF-Serving-compatible REST server.

* `export`: `export_saved_model` writes a string-in / string-out SavedModel
  (`serving_default`, `serving_tf_example`, warm-up requests) in the layout
  TF Serving loads.
* `index`: an optional approximate clustered index the export can serve
  top-k from (`tfrec-dyn export --index-probes`), with its recall measured
  against exact top-k.
* `rest`: `create_app` / `serve`, TF Serving's REST API (`tfrec-dyn serve`).
"""
