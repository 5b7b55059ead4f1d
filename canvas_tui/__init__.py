"""canvas-tui: move SIS enrollments into Canvas LMS from a terminal console or headless."""

__version__ = "0.1.0"
