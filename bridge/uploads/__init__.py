"""Uploaded recordings (``POST /api/v1/calls``) transcribed as calls, on capacity live calls leave.

* :mod:`.admission` — pure: the limits, who may receive, wait and run, the capacity rule and the
  FIFO queue (:class:`UploadQueue`);
* :mod:`.jobs` — :class:`UploadJobs`: receiving slots, storing the call, running the file through
  :func:`bridge.transcribe.transcribe_file`, cancelling, shutting down;
* :mod:`.folders` — each process's locked folder of uploads, and the sweep of a dead process's.

The HTTP side (the body streamed to disk under the size limit, the request's checks, refusals as
problem documents) is ``bridge.http.uploads`` and ``bridge.http.upload_body``: arrows run from
``http`` to here, never back.
"""

from .admission import UploadLimits, UploadQueue, UploadState
from .jobs import Accepted, UploadJobs

__all__ = ["Accepted", "UploadJobs", "UploadLimits", "UploadQueue", "UploadState"]
