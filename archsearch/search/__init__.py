"""The search: Keras Tuner's hypermodel, tuners and oracle, TensorBoard logs, and the chief, workers and supervisor."""
