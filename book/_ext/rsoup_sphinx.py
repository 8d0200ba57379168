"""Sphinx glue for the rsoup book, loaded through ``sphinx: local_extensions`` in _config.yml.

Sphinx 7.4 writes some inline scripts twice on every page: an extension that adds one after the
HTML builder has started (sphinx-thebe's configuration, sphinx-togglebutton's selector) gets it
stored by the builder with ``filename=None`` and again by the registry with ``filename=''``, and
the two do not compare equal. The second ``const THEBE_JS_URL = ...`` then throws "Identifier
'THEBE_JS_URL' has already been declared" in every reader's console (the browser test,
tests/test_browser.py, treats any JavaScript error as a failure). Keep the first of identical
scripts.
"""


def _script_key(script):
    filename = getattr(script, "filename", script) or ""
    attributes = getattr(script, "attributes", {})
    return (str(filename), tuple(sorted((k, str(v)) for k, v in attributes.items())))


def drop_duplicate_scripts(app, pagename, templatename, context, doctree):
    scripts = context.get("script_files")
    if not isinstance(scripts, list):
        return
    seen, unique = set(), []
    for script in scripts:
        key = _script_key(script)
        if key not in seen:
            seen.add(key)
            unique.append(script)
    scripts[:] = unique


def setup(app):
    app.connect("html-page-context", drop_duplicate_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
