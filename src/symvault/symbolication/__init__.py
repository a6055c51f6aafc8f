"""The use cases: turning addresses in stack traces into functions, files and lines.

`service.Symbolicator` runs one request: it finds the module of every frame
(`modules`), fetches the module's symcache through `symvault.caches`, looks
frames up (`native`), demangles names (`demangle`), adds source context from
source bundles (`source_context`) and reports per module what was found.
`requests.RequestRegistry` gives each request its lifecycle (pending, polls,
results kept for a while); `mozilla` serves Mozilla's symbolication API on the
same engine.
"""
