"""Offline scoring: every session of a table (Parquet, JSON lines, CSV) -> its top-k items, as a table.

On one machine, in one or N processes (``score_file``, ``srgnn-rt score``), or on a
Ray cluster with Ray Data (``score_ray``, ``recommend_dataset``, ``srgnn-rt score
--engine ray``). pyarrow (extra ``arrow``) and Ray (extra ``ray``) are imported
only by the code that uses them. Modules: ``tables`` (streaming readers and
writers), ``batches`` (one batch answered, bad sessions isolated), ``local``,
``ray_data``.
"""

from .local import ScoreSummary, score_file
from .ray_data import recommend_dataset, score_ray


__all__ = ["ScoreSummary", "recommend_dataset", "score_file", "score_ray"]
