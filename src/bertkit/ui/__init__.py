"""`bertkit ui`: the local web app (bertkit.ui.app) and its job queue (bertkit.ui.jobs)."""
