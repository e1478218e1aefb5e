"""The typed model: what the engine stores and passes, as attrs classes.

The Docker API's shapes are views of these records (each record's ``to_api()``),
not what is stored; :data:`dockyard.model.convert.converter` (cattrs) turns a record
into the JSON the metadata store holds and back.  The OCI/Docker image documents
(descriptors, manifests, indexes, image configs) are in :mod:`dockyard.imagespec`.
"""
