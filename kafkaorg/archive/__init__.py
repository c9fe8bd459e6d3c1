"""The archive: audit-class and ``archive: true`` topics copied to Parquet files before
their retention ends, with a manifest in PostgreSQL, and read back for ``kafkaorg
archive replay|restore|verify``.

``files`` is the file format and storage, ``manifest`` the PostgreSQL side, ``writer``
one archive run (the ``ArchiveWorkflow``'s activity), ``reader`` everything that reads
the archive back.
"""
