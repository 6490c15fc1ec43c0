"""Every autoencoder kind, registered by importing its module here (the one list of kinds).

Importing this package registers the kinds with ``models.registry``; it is light (each builder
imports Keras when it builds), so listing the kinds does not load TensorFlow.
"""

from models.kinds import conv, conv_vae, deep, denoising, dense, linear, sparse, vae

__all__ = ["conv", "conv_vae", "deep", "denoising", "dense", "linear", "sparse", "vae"]
