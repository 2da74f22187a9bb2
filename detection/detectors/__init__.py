"""Pure detectors: bytes, images or hashes in, findings out. No Django, no database, no settings.

Everything here can be imported and tested without configuring Django; `import-linter` holds the
package to that (see pyproject.toml).
"""
