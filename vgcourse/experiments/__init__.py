"""One module per chapter: frozen ``Config`` dataclasses and ``run(config) -> Result`` functions.

A chapter's cells call these; its explorer calls the same functions; its tests assert their results.
"""
