"""The headers every response carries: no framing, no MIME sniffing, no referrer outside the site.

A plain list without imports: the server sends it on its first answers too, before Flask loads.
The page loads nothing from outside and runs no inline script or style (static/status.js,
static/style.css), so the policy can be this strict.
"""

CONTENT_SECURITY_POLICY = ("default-src 'self'; object-src 'none'; base-uri 'none'; "
                           "form-action 'self'; frame-ancestors 'none'")

HEADERS = (
    ("Content-Security-Policy", CONTENT_SECURITY_POLICY),
    ("X-Frame-Options", "DENY"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "same-origin"),
)
