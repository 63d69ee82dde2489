"""The names and version of the saved format (docs/format.md)."""

FORMAT_VERSION = 1
META_FILE = "slimfusion.json"
SCHEDULER_FILE = "scheduler_config.json"  # diffusers' name: `LCMScheduler.from_pretrained(folder)` reads it
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
STORAGES = ("dense", "compact")
RECORDED = ("history", "scheduler", "skip_plan", "storage", "sampler")
