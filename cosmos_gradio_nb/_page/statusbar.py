"""The status bar's handlers: the server's log tail and the workers line, once a second.

:class:`StatusBar` answers the page's timer: the log is re-read only when its
file's size or modification time changed (the signature the page keeps in a
``gr.State``), the workers line (each group's state and device, the queue's
length) every time, since it is one call on the app. In the browser,
:data:`FOLLOW_LOG_JS` keeps the log viewer on its newest line.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from .._core.logtail import read_tail
from .backend import Backend

__all__ = ["FOLLOW_LOG_JS", "StatusBar"]

# The page's js (launch's default): keeps the log viewer on its newest line, unless the
# user scrolled up to read.
FOLLOW_LOG_JS = """
() => {
  let follow = true, last = null;
  const tick = () => {
    const t = document.querySelector('#cg-log textarea');
    if (!t) return;
    if (!t.dataset.cgWatched) {
      t.dataset.cgWatched = '1';
      t.addEventListener('scroll', () => {
        follow = t.scrollHeight - t.scrollTop - t.clientHeight < 24;
      });
    }
    if (t.value !== last) {
      last = t.value;
      if (follow) t.scrollTop = t.scrollHeight;
    }
  };
  setInterval(tick, 250);
}
"""


class StatusBar:
    """The log viewer and the workers line of one page."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def refresh(self, sig: Any) -> tuple[Any, str, Any]:
        """The log tail (only when the file changed) and the workers line, once a second.

        Returns ``(log text or skip, workers line, the log file's new signature)``.
        """
        log_file = self.backend.log_file
        try:
            st = log_file.stat()
            new_sig = [st.st_size, st.st_mtime_ns]
        except OSError:
            new_sig = None
        text = gr.skip() if new_sig == sig else read_tail(log_file)
        return text, self.backend.workers_line(), new_sig

    def on_load(self) -> tuple[str, str, Any]:
        """``(log tail, workers line, signature)`` when a page opens; the signature is
        None so that the first tick of the timer reads the log again."""
        return read_tail(self.backend.log_file), self.backend.workers_line(), None
