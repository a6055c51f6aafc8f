"""The cache kinds built on `symvault.caching`, one small module each.

- `objects`: debug files downloaded from sources (raw entries).
- `object_meta`: what a downloaded file contains, kept after the file expires,
  so that choosing between candidates does not need the file again.
- `symcaches`, `cficaches`: conversions made with `symbolic`, one entry per
  (source, module), through the shared machinery of `derived`.

`search` finds the best file for a module in one source; `service.Caches`
puts it together for the rest of symvault.
"""
