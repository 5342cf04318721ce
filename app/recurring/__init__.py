"""Recurring tasks: templates with a schedule, and the daily generation of their tasks."""
