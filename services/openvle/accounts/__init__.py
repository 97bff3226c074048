"""Accounts: who someone is and how they prove it.

Users carry a role (student, teacher, admin); they prove who they are with a password (argon2id),
a browser session or a personal API token. Everything that turns a credential into an `Actor`
lives in `identity.py`, the one seam where single sign-on (OIDC) plugs in later.
"""
