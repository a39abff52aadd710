"""The write path: scan -> diff against the catalog -> read and hash -> decode and encode -> commit in batches.

`scan.py` holds the scan and the diff, `pipeline.py` the hashing, decoding, encoding and the commit code. Decoding
and encoding run in this process (reader threads decode, the calling thread encodes) or on a Ray cluster
(`cluster.py` drives Ray Data, `worker.py` is what each actor runs). `job.py` is the `imagesim index` job. Ray is
imported only when a run asks for it.
"""

from ..encoders import WEIGHT_FREE
from .job import run_index
from .pipeline import IndexReport
from .scan import index_gallery

__all__ = ["WEIGHT_FREE", "IndexReport", "index_gallery", "run_index"]
