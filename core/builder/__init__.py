"""Groundwork for ``dockyard build``: Dockerfile parsing, build-time variable
substitution, ``.dockerignore`` matching and build-context helpers.

Pure Python, no daemon state: :mod:`.dockerfile`, :mod:`.shellexpand`,
:mod:`.dockerignore`, :mod:`.context`.
"""
