"""The example Classic model's measured training memory, for the size presets and the node's check.

Peak RSS above the node process's baseline, per int8 feature value of the training set, when
`models.tournament.train` streams the rows into LightGBM's 4-bit bins: the slope that
benchmarks/container_sizes.py measures in the node image (400k to 800k rows x 500 features,
10 trees; 1.13 at 2.7M x 705 in benchmarks/training_memory.py). LightGBM's binned copy takes
about one byte per value while it is built, so 1.0 is the floor of this approach.
"""

TRAIN_BYTES_PER_VALUE = 1.16
