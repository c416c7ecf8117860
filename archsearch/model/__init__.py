"""The model of a planned architecture: its layers, building, training, and the backend's settings."""
