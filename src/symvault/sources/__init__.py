"""Where debug files come from: this server's store, directories, HTTP symbol servers, S3, Sentry.

Source definitions have Symbolicator's shape (`sources/config.py`), so existing
Symbolicator source lists work unchanged. Each source type implements the
`Source` protocol (`sources/base.py`): list the candidate files for a module,
and download one of them into a local file. Downloads are bounded in size and
time, sniffed and decompressed (`sources/decompress.py`), and HTTP requests
refuse private and reserved addresses unless allowed (`sources/addresses.py`).
"""
