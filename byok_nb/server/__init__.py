"""Processes that serve the product: the Voila admin app (``byok-nb serve`` / ``demo``) and the
pieces its kernels need to wait for their visitor."""
