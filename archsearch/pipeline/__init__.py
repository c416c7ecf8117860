"""The run itself: retraining, the baselines and the references, and the pipeline from search to export."""
