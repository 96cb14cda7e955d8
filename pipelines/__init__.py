"""The TFX pipeline: `create_pipeline(config)` and one runner per orchestrator."""
