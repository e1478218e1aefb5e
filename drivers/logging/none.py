"""The ``none`` log driver: the container's output is kept nowhere (``docker
logs`` is refused as dockerd refuses it; ``docker attach`` still shows it, from
the shim's small stream file)."""

from dockyard.hookspecs import hookimpl


class NoneDriver:
    @hookimpl
    def logging_supported(self, home, options):
        return None

    @hookimpl
    def logging_init(self, home, options):
        return None

    @hookimpl
    def logging_validate(self, config):
        return None  # dockerd takes (and ignores) any option here; its CLI refuses them

    @hookimpl
    def logging_writer(self, container, config):
        return {"module": None}
