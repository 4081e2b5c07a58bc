"""Serving a bundle on inference servers: a Triton model repository and a Ray Serve deployment.

``triton`` writes a Triton repository (Python backend, ``triton_model.py`` is its
adapter), ``triton_server`` runs the ``tritonserver`` binary of nvidia-pytriton on
127.0.0.1, ``ray_serve`` is the Ray Serve deployment, ``answers`` answers one
engine batch so that a bad request fails alone. Each adapter calls the same
``srgnn_rt.Recommender`` a Python user calls; the optional engines (ray,
tritonclient, nvidia-pytriton) are imported only by the module that needs them.
"""
