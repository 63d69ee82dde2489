"""The names and version of the saved format (docs/format.md)."""

FORMAT_VERSION = 1
META_FILE = "slimfusion.json"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
STORAGES = ("dense", "compact")
RECORDED = ("history", "scheduler", "skip_plan", "storage")
