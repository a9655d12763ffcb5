"""The example Classic model's measured training memory, for the size presets and the node's check.

Peak RSS above the node process's baseline, per int8 feature value of the training set, when
`models.tournament.train` streams the rows into LightGBM's 4-bit bins: the slope of the line that
benchmarks/container_sizes.py fits to trainings in the node image (500 features, 10 trees).
"""

TRAIN_BYTES_PER_VALUE = 1.0
