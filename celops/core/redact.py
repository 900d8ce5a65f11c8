"""Hide secrets in URLs, replies and configuration before anything is printed."""

import re

MASK = "***"

# scheme://user:password@host  and  scheme://:password@host
_URL_CREDENTIALS = re.compile(r"(?P<head>\b[a-zA-Z][\w+.-]*://[^:/@\s]*):(?P<secret>[^@/\s]*)@")

# ?sentinel_password=... and the like in a URL's query
_QUERY_SECRET = re.compile(r"(?P<head>[?&][\w.]*(?:pass(?:word|wd)?|secret|token)=)[^&;#\s]*", re.I)

# Keys whose values are secret whatever they look like.
_SECRET_KEY = re.compile(r"pass(word|wd)?$|secret|token|api_?key|credential|private_key|ssl_key", re.I)


def redact_url(url):
    """Replace the password part of every URL in ``url`` with ``***``."""
    if not isinstance(url, str):
        return url
    url = _URL_CREDENTIALS.sub(lambda m: f"{m['head']}:{MASK}@", url)
    return _QUERY_SECRET.sub(lambda m: f"{m['head']}{MASK}", url)


def redact(value):
    """Return a copy of a reply or config structure with secrets masked.

    URLs anywhere (``broker_url``, ``result_backend``, the ``alternates`` of
    ``stats``...) lose their passwords; values under secret-sounding keys
    (``password``, ``sentinel_kwargs.password``, tokens) are masked whole.
    """
    if isinstance(value, str):
        return redact_url(value)
    if isinstance(value, dict):
        return {key: (MASK if _is_secret_key(key) and item not in (None, "") else redact(item))
                for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(item) for item in value]
    return value


def _is_secret_key(key):
    return isinstance(key, str) and bool(_SECRET_KEY.search(key))
