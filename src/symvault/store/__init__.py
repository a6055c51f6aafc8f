"""Uploaded debug files: blobs, chunk upload, assembly, detection, the metadata database.

Everything here is synchronous and may block: the API layer calls it from
worker threads, never on the event loop.
"""
