"""The classic builder (``POST /build``, ``DOCKER_BUILDKIT=0``).

    service       :class:`BuildService`, the facade front ends call (build, prune)
    build         the stages, FROM, the cache-or-make step, tags
    steps         metadata instructions; layersteps: COPY, ADD, WORKDIR, RUN; run: RUN's container
    copy          file copying; context: the build context; cache: the build cache
    dockerfile, instructions, shellexpand, buildargs: reading the Dockerfile

Importing this package imports none of its modules.
"""
