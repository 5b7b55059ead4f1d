"""Widgets that render engine state; none of them talks to Canvas or the journal's SQL."""
