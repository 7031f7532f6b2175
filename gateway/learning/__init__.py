"""The learning loop: feedback, shadow quality sampling, quality statistics and recalibration.

See README.md in this folder for what each part does and how to use it.
"""
