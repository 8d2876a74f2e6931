"""`memfs ui`: a web page over the caller's memory, run by (and as) the user.

Like `memfs mcp`, it works only through the mount (memfs.client), so the daemon decides
what the page may see and change, exactly as for files. The parts: `security` (who may
talk to the page at all), `render` (untrusted markdown to inert HTML, diffs), `memory`
(what a page needs, read and written through the mount), `views` (one function per page
or form), `app` (routes, templates, the server).
"""
