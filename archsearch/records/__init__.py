"""What a run writes and reads back: the run directory, its tables and the training history."""
