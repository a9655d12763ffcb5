"""The sandbox's defaults, importable without its heavy parts (the CLI's --help stays fast)."""

DEFAULT_PUBLIC_ID = "sandbox-public-id"
DEFAULT_SECRET_KEY = "sandbox-secret-key"
DEFAULT_MODELS = ("sandbox_model", "sandbox_signals:signals")
SIZE_NAMES = ("tiny", "small", "bench")  # the presets of sandbox.sizes.SIZES
