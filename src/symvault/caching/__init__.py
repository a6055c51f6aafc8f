"""The generic cache engine. It knows nothing about debug files.

Design notes
============

What is cached
--------------
Each cache kind (see `symvault.caches`) has a directory below the cache root:
`<cache_dir>/<kind>/v<version>/<scope>/<key>`. Two entry formats exist:

- raw entries (downloaded debug files): the file exactly as fetched and
  unpacked, so that any tool can read it. Raw caches never hold placeholders.
- framed entries (derived caches, object metadata): an optional payload, then
  a JSON trailer, its length and a magic number (`entries.py`). The trailer says
  what the entry is: `ok`, or a placeholder for a miss (`notfound`, `noperm`),
  a failed conversion (`malformed`, `unsupported`) or a failed fetch (`error`,
  `timeout`). Negative caching is data: every cached error kind is one status.
  Readers of the payload (symbolic maps symcaches from disk) ignore the trailer.

Rules (seed design, `rules.py`)
-------------------------------
1. A good entry lives until it has not been used for `max_unused_for`. Use is
   recorded in the file's mtime, touched at most once per hour (`TOUCH_EVERY`).
2. Placeholders for misses (`notfound`, `noperm`) live `retry_misses_after`,
   measured from their mtime, the time of the attempt.
3. Failed conversions (`malformed`, `unsupported`) live
   `retry_malformed_after`, but never past a restart: a placeholder older than
   the start of this process is ignored, so that a fixed converter gets to try.
4. Failed fetches (`error`, `timeout`) live `retry_errors_after`, so that a
   symbol server outage is retried sooner than a real miss.
5. Kinds may ask to refresh a good entry (a cache derived from a fallback file,
   at most once per `TOUCH_EVERY`): it is still served, and recomputed in the
   background.

Versions
--------
Every kind declares `CacheVersions`: the current version and older ones that
may still be served. An entry found only under an older version is returned
(marked outdated) and recomputed in the background under the current one;
entries of unknown versions are left to `cleanup`. A bump is recorded with its
reason next to the version list of the kind.

Scopes
------
Entries of a request with a scope live in that scope's directory; public
sources use `global`. Scope names are used as directory names when they are
simple, and hashed otherwise, so no scope can name a path outside its kind.

Writes, reads, concurrency
--------------------------
Entries are written to a temporary file in `<cache_dir>/tmp` (same
filesystem) and renamed into place, so readers see all or nothing. Files may
vanish at any moment (cleanup, an operator): every read treats a vanished
file as a miss. Concurrent requests for one entry share one computation: in
a process through a future per key, across processes through an `flock` on a
per-key lock file, after which the entry is looked up again before computing.
Internal errors (exceptions) are never cached.

Cleanup
-------
`cleanup.py` walks all kinds, removes what the rules say has expired, then, if
the cache exceeds `max_size` or the disk has less than `min_free_space`,
evicts least recently used entries, raw downloaded files first.
"""
