"""The run itself: retraining, the baselines, and the pipeline from search to export."""
