"""The synthetic ADL world: parametric NTU-25 motions, their rendering to RGB, and the world on disk.

It stands in for NTU RGB+D and Charades where those cannot be shipped, so it lives apart from the
readers of the real formats in :mod:`ski_lvlm.data`.
"""
