"""Screens pushed over the dashboard: dialogs, help, failure stepper, roster inspector."""
