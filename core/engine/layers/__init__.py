"""Layers and content: what images are made of, and where it is kept.

    store      the layer store: chain IDs of diff IDs -> the storage driver's layers,
               registered from layer tars, tar-split records, staged writes
    content    the content store: blobs (configs, manifests, layer blobs) by digest
    migrate    moving every layer to another storage driver, verified
    service    :class:`StorageService`, the facade front ends call (migrate, status)

Importing this package imports none of its modules.
"""
