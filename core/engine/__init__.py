"""The engine: one service per aggregate, each a subpackage with one facade.

    containers  ContainerService: records, lifecycle, restart policies, health,
                exec instances, operations, cp and export, mount points
    images      ImageService: the image store, rmi, import, save, load, commit, check
    networks    NetworkService: networks, endpoints, IPAM, the embedded DNS
    volumes     VolumeService
    layers      StorageService; the layer store, the content store, migration
    bundle      Bundles: a container record as an OCI runtime bundle
    system      SystemService: /info, /version, system df, events
    events      the Emitter and the EventBus
    engine      the composition root (Engine): drivers, stores, every service
    filters, modes  Docker's filter values; the data root's modes

Front ends call the facades (``<aggregate>.service``) and nothing else; see
docs/architecture.md.  Importing this package imports none of its modules.
"""
