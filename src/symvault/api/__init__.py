"""HTTP only: parse a request, call a use case, serialize the answer.

One module per route group; `symvault.api.app.create_api` assembles them.
Blocking work always runs in worker threads (`run_blocking`).
"""
