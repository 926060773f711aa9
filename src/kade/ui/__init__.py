"""The web interface, served by the API server under `/ui/` (docs/ui.md).

Pages are rendered on the server (Jinja2, kade.ui.render) from the same reads and views the
JSON API answers from; what changes is pushed: one `/v1/events` stream per browser tab tells
`static/kade.js` which regions of the page to fetch again (a region is a template block,
rendered alone with `?fragment=<block>`). Every action a page offers is a call of the JSON
API from the browser, so admission and authorization exist once.
"""
