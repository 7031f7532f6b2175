"""HTTP surface: one sub-package per endpoint family."""
