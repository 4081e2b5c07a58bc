"""srgnn_rt_torch: the torch side of srgnn_rt (model, data preparation, training, ONNX export).

Submodules are imported on use: ``srgnn_rt_torch.prepare`` (numpy only),
``.model``, ``.train``, ``.evaluate``, ``.run`` (torch).
"""
