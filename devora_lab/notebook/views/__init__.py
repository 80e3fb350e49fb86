"""Topic views of the workbench notebooks: charts (altair 5) and tables per topic.

``costs``, ``experiments``, ``rag`` and ``cache`` each turn what the package's analysis
returns (DataFrames and result objects) into charts with tooltips and tables, and say in
a ``Note`` what is missing where the workspace lacks it. They hold no analysis of their
own: the numbers come from ``devora_lab.costs``, ``experiments``, ``rag``, ``cache`` and
``monitoring``. Import the topic you need (``from devora_lab.notebook.views import
costs``); this module itself loads only the shared pieces, so a notebook pays for the
libraries of its own topic alone.
"""

from devora_lab.notebook.views._common import Note, Scope, open_scope, render

__all__ = ["Note", "Scope", "open_scope", "render"]
