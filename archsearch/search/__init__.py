"""The search: Keras Tuner's hypermodel, tuners, oracle and its leases, TensorBoard logs, the chief and its workers."""
