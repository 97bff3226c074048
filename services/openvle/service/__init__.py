"""The service layer: what users may do, checked once, for the JSON API, the pages and the CLI.

Every function takes the acting user (`accounts.identity.Actor`) first, applies authz.py and the
shared input specs (specs.py), calls the domain and the Task runtime, and returns views (views.py).
Problems are `openvle.errors.RequestError`s whose message names the problem and the fix.
"""
