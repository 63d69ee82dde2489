"""Making the built-in models (`slimfusion make-builtin`): the digits VAE, text encoder, classifier, text-to-image and
DiT pipelines, each trained from scratch on scikit-learn's digits. Recovery of compressed models is in
`slimfusion.train.recovery`; both use the one training loop in `slimfusion.train.loop`."""

from slimfusion.train.builtins.conditional import BuiltinConfig, build_digits_dit, build_digits_t2i, build_digits_vae

__all__ = ["BuiltinConfig", "build_digits_dit", "build_digits_t2i", "build_digits_vae"]
